"""Settings of the TAXII server (``ENLACE_TAXII_*`` environment, frozen).

Secure by default: a server with no credentials refuses to start unless ``anonymous`` is set
on purpose, and secrets are ``SecretStr`` (never in a log or a repr).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from enlace.core.settings import DEFAULT_AGENCIES

DEFAULT_LISTEN = "127.0.0.1:9500"
MAX_PAGE_LIMIT = 10_000


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a pair; ValueError says what is wrong."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{listen!r} is not HOST:PORT (like 127.0.0.1:9500)")
    return host.strip("[]"), int(port)


class TaxiiSettings(BaseSettings):
    """A partner's TAXII 2.1 server. Environment: ``ENLACE_TAXII_LISTEN``, ``..._USERNAME``..."""

    model_config = SettingsConfigDict(env_prefix="ENLACE_TAXII_", frozen=True, extra="ignore")

    db: Path | None = Field(default=None, description="The partner's SQLite store to serve.")
    listen: str = Field(default=DEFAULT_LISTEN, description="HOST:PORT; port 0 picks one.")
    username: str | None = Field(default=None, description="HTTP Basic user.")
    password: SecretStr | None = Field(default=None, description="HTTP Basic password.")
    token: SecretStr | None = Field(
        default=None, description="Bearer token (also accepted as 'Authorization: Token ...')."
    )
    anonymous: bool = Field(
        default=False, description="Serve without authentication (only on purpose)."
    )
    max_page: int = Field(default=1000, ge=1, le=MAX_PAGE_LIMIT)
    misp_feed: Path | None = Field(
        default=None, description="A misp: sink's directory, served at /misp/ (a MISP feed)."
    )
    tls_cert: Path | None = None
    tls_key: Path | None = None
    title: str = "Enlace"
    agencies_file: Path = DEFAULT_AGENCIES
    read_threads: int = Field(default=4, ge=1, le=32)
    log_level: str = "INFO"
    log_format: Literal["json", "console", "auto"] = "auto"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @model_validator(mode="after")
    def _credentials(self) -> TaxiiSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password for HTTP Basic, or neither")
        if self.username is None and self.token is None and not self.anonymous:
            raise ValueError(
                "no credentials: set username and password, or token "
                "(ENLACE_TAXII_USERNAME/_PASSWORD/_TOKEN), or anonymous to serve without auth"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key, or neither")
        return self

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]
