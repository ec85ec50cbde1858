"""The intake never runs open by accident: token, loopback-only opt-out, TLS settings."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from enlace.core.errors import ConfigError
from enlace.core.http import server_tls_context
from producers.intake_access import intake_token, is_loopback
from producers.service import PublisherService
from producers.settings import PublisherSettings
from tests.tls_certs import server_cert

AGENCY = "pa-senafront"


def settings(**fields: Any) -> PublisherSettings:
    # Not read from the environment: a developer's ENLACE_HTTP_TOKEN must not mask a refusal.
    base: dict[str, Any] = {
        "http_token": None,
        "http_token_file": None,
        "http_insecure_no_auth": False,
    }
    return PublisherSettings(agency=AGENCY, **{**base, **fields})


def test_no_token_is_refused_at_start_with_what_to_set() -> None:
    with pytest.raises(ConfigError) as refused:
        PublisherService(settings())
    message = str(refused.value)
    assert "ENLACE_HTTP_TOKEN" in message
    assert "--insecure-no-auth" in message
    assert "--no-intake" in message


def test_an_empty_token_counts_as_none() -> None:
    with pytest.raises(ConfigError, match="empty"):
        intake_token(settings(http_token=""))


def test_without_the_intake_no_token_is_needed() -> None:
    service = PublisherService(settings(intake_enabled=False))
    assert service.http.app.router.resources()  # /metrics and /health only
    assert all(r.canonical != "/bulletins" for r in service.http.app.router.resources())


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "10.1.2.3", "intake.example.org"])  # noqa: S104
def test_insecure_no_auth_refuses_every_non_loopback_host(host: str) -> None:
    with pytest.raises(ConfigError, match="only on a loopback address") as refused:
        intake_token(settings(http_insecure_no_auth=True, http_host=host))
    assert "ENLACE_HTTP_TOKEN" in str(refused.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"])
def test_insecure_no_auth_is_allowed_on_loopback(host: str) -> None:
    assert is_loopback(host)
    assert intake_token(settings(http_insecure_no_auth=True, http_host=host)) is None


def test_a_token_and_insecure_no_auth_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="drop one"):
        intake_token(settings(http_token="t0ken", http_insecure_no_auth=True))


def test_the_token_may_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-a-file\n", encoding="utf-8")
    token = intake_token(settings(http_token_file=path))
    assert token is not None
    assert token.get_secret_value() == "from-a-file"
    with pytest.raises(ConfigError, match="not both"):
        intake_token(settings(http_token_file=path, http_token="t0ken"))
    with pytest.raises(ConfigError, match="cannot read"):
        intake_token(settings(http_token_file=tmp_path / "missing"))


def test_tls_needs_both_cert_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both a certificate and its key"):
        settings(http_tls_cert=tmp_path / "c.pem")
    with pytest.raises(ConfigError, match="both a certificate and its key"):
        settings(http_tls_key=tmp_path / "k.pem")


def test_tls_context_is_tls12_or_later_and_bad_files_are_config_errors(tmp_path: Path) -> None:
    certs = server_cert(tmp_path)
    context = server_tls_context(certs.cert, certs.key)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    with pytest.raises(ConfigError, match="cannot load the TLS certificate"):
        server_tls_context(tmp_path / "missing.pem", certs.key)
    other = server_cert(tmp_path / "other")
    with pytest.raises(ConfigError, match="cannot load the TLS certificate"):
        server_tls_context(certs.cert, other.key)  # a key that is not the certificate's
    with pytest.raises(ConfigError, match="cannot load the TLS certificate"):
        PublisherService(
            settings(http_token="t0ken", http_tls_cert=certs.cert, http_tls_key=other.key)
        )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "ENLACE_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    return subprocess.run(
        [sys.executable, "-m", "enlace.cli", "publisher", "run", "--agency", AGENCY, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_publisher_run_refuses_without_a_token_with_one_clean_line() -> None:
    result = run_cli()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: the HTTP intake (POST /bulletins) needs a bearer")
    assert "ENLACE_HTTP_TOKEN" in result.stderr
    assert "--insecure-no-auth" in result.stderr

    result = run_cli("--insecure-no-auth", "--http-host", "0.0.0.0")  # noqa: S104
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "only on a loopback address" in result.stderr
