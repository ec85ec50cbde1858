"""Settings shared by every service; each service subclasses :class:`KafkaSettings`.

Only ``main()`` functions (the CLI) instantiate settings, so only they read the environment.
Every class is frozen and reads ``ENLACE_*`` variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_AGENCIES = REPO_ROOT / "deploy" / "agencies.yaml"
DEFAULT_POLICY = REPO_ROOT / "deploy" / "policy.yaml"
DEFAULT_KEYS = REPO_ROOT / "deploy" / "keys.yaml"
DEFAULT_STATE_DIR = Path(".enlace")
# The one SASL mechanism of the exchange: clients, brokers, provisioning and manifests.
SCRAM_MECHANISM = "SCRAM-SHA-512"


class KafkaSettings(BaseSettings):
    """How to reach Kafka and how topics are laid out. Environment: ``ENLACE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ENLACE_", frozen=True, extra="ignore")

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="Comma-separated host:port list of brokers."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    topic_partitions: int = Field(default=3, ge=1, le=64)
    topic_replication: int = Field(default=1, ge=1, le=5)
    topic_min_insync: int = Field(default=1, ge=1, le=5)
    agencies_file: Path = DEFAULT_AGENCIES
    log_level: str = "INFO"
    log_format: Literal["json", "console", "auto"] = "auto"

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
        if self.kafka_security_protocol == "SASL_SSL":
            from aiokafka.helpers import create_ssl_context  # noqa: PLC0415 - only with TLS

            kwargs["ssl_context"] = create_ssl_context(
                cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
            )
        return kwargs
