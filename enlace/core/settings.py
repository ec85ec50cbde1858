"""Settings shared by every service; each service subclasses :class:`KafkaSettings`.

Only ``main()`` functions (the CLI) instantiate settings, so only they read the environment.
Every class is frozen and reads ``ENLACE_*`` variables.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from enlace.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_AGENCIES = REPO_ROOT / "deploy" / "agencies.yaml"
DEFAULT_POLICY = REPO_ROOT / "deploy" / "policy.yaml"
DEFAULT_KEYS = REPO_ROOT / "deploy" / "keys.yaml"
DEFAULT_STATE_DIR = Path(".enlace")
# The one SASL mechanism of the exchange: clients, brokers, provisioning and manifests.
SCRAM_MECHANISM = "SCRAM-SHA-512"


_CONNECTION_FIELDS = {
    "kafka_bootstrap",
    "kafka_security_protocol",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
}


class KafkaSettings(BaseSettings):
    """How to reach Kafka and how topics are laid out. Environment: ``ENLACE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ENLACE_", frozen=True, extra="ignore")

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="Comma-separated host:port list of brokers."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        default="PLAINTEXT",
        description="SASL_SSL: SCRAM over TLS; SSL: a client certificate (mTLS) names the "
        "principal.",
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description="PEM CA that signed the brokers' certificates (default: the system's).",
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate chain (SSL: mTLS)."
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, description="PEM private key of the client certificate."
    )
    topic_partitions: int = Field(default=3, ge=1, le=64)
    topic_replication: int = Field(default=1, ge=1, le=5)
    topic_min_insync: int = Field(default=1, ge=1, le=5)
    agencies_file: Path = DEFAULT_AGENCIES
    log_level: str = "INFO"
    log_format: Literal["json", "console", "auto"] = "auto"

    def connection(self) -> dict[str, Any]:
        """The fields that say how to reach and authenticate to Kafka (to copy them into
        another service's settings)."""
        return self.model_dump(include=_CONNECTION_FIELDS)

    def client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments common to every aiokafka client."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = SCRAM_MECHANISM
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        if self.kafka_security_protocol.endswith("SSL"):
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the broker's chain and hostname (aiokafka's helper insists on both)."""
        from aiokafka.helpers import create_ssl_context  # noqa: PLC0415 - only with TLS

        if self.kafka_security_protocol == "SSL" and self.kafka_ssl_certfile is None:
            raise ConfigError(
                "ENLACE_KAFKA_SECURITY_PROTOCOL=SSL authenticates with a client certificate: "
                "set ENLACE_KAFKA_SSL_CERTFILE and ENLACE_KAFKA_SSL_KEYFILE "
                "(`enlace acl certificates AGENCY` issues them for a local cluster)"
            )
        try:
            context: ssl.SSLContext = create_ssl_context(
                cafile=_opt_str(self.kafka_ssl_cafile),
                certfile=_opt_str(self.kafka_ssl_certfile),
                keyfile=_opt_str(self.kafka_ssl_keyfile),
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS files for Kafka: {exc}") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


def _opt_str(path: Path | None) -> str | None:
    return None if path is None else str(path)
