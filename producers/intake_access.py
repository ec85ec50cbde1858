"""Who may use the HTTP intake: the bearer token it requires, or the explicit opt-out.

The intake publishes signed bulletins in the agency's name, so it never runs open by
accident: without a token it refuses to start unless ``--insecure-no-auth`` is given, and
then only on a loopback address, where only this machine can reach it.
"""

from __future__ import annotations

import ipaddress

from pydantic import SecretStr

from enlace.core.errors import ConfigError
from producers.settings import PublisherSettings

# By name only "localhost": any other name could resolve anywhere.
LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; an empty host means every interface."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def intake_token(settings: PublisherSettings) -> SecretStr | None:
    """The token POST /bulletins requires; ``None`` only with insecure-no-auth on loopback.

    Raises :class:`ConfigError`, saying what to set, for every other combination.
    """
    token = _configured_token(settings)
    host = settings.http_host
    if settings.http_insecure_no_auth:
        if token is not None:
            raise ConfigError(
                "both a bearer token and --insecure-no-auth are set: drop one "
                "(ENLACE_HTTP_TOKEN / ENLACE_HTTP_TOKEN_FILE or ENLACE_HTTP_INSECURE_NO_AUTH)"
            )
        if not is_loopback(host):
            raise ConfigError(
                f"--insecure-no-auth serves the intake only on a loopback address "
                f"(127.0.0.1, ::1, localhost), not {host or 'every interface'!r}: set "
                f"ENLACE_HTTP_TOKEN (or ENLACE_HTTP_TOKEN_FILE) to serve it there"
            )
        return None
    if token is None:
        raise ConfigError(
            "the HTTP intake (POST /bulletins) needs a bearer token: set ENLACE_HTTP_TOKEN "
            "or ENLACE_HTTP_TOKEN_FILE; or pass --insecure-no-auth to serve it without one "
            "on a loopback address; or --no-intake to not serve it"
        )
    return token


def _configured_token(settings: PublisherSettings) -> SecretStr | None:
    path = settings.http_token_file
    if path is None:
        token = settings.http_token
    elif settings.http_token is not None:
        raise ConfigError("set ENLACE_HTTP_TOKEN or ENLACE_HTTP_TOKEN_FILE, not both")
    else:
        try:
            # A trailing newline is how editors and `echo` end a file, not part of the token.
            token = SecretStr(path.expanduser().read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the intake token file {path}: {exc}") from exc
    if token is not None and not token.get_secret_value():
        raise ConfigError(
            "the intake token is empty: set ENLACE_HTTP_TOKEN (or ENLACE_HTTP_TOKEN_FILE)"
        )
    return token
