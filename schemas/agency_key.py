"""An agency's Ed25519 signing key: generated, saved 0600 outside the repository, loaded.

The private key file holds the 32-byte seed in base64; it never goes to the key directory,
which only carries :meth:`AgencyKey.public_entry`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from nacl.signing import SigningKey

from enlace.core.errors import ConfigError
from enlace.core.registry import check_agency_id

DEFAULT_KEY_DIR = Path("~/.enlace/keys")
KEY_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SEED_SIZE = 32
_PRIVATE_BITS = stat.S_IRWXG | stat.S_IRWXO


def check_key_id(value: str) -> str:
    if not KEY_ID_PATTERN.fullmatch(value):
        raise ValueError(f"key id {value!r} must be 1-64 of a-z 0-9 . _ - (starting alphanumeric)")
    return value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ValueError(f"{what} is not valid base64") from None
    if len(raw) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def _now_seconds() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class AgencyKey:
    """One signing key of one agency, known by its key id."""

    agency: str
    key_id: str
    signing_key: SigningKey = field(repr=False)
    valid_from: datetime

    def __post_init__(self) -> None:
        try:
            check_agency_id(self.agency)
            check_key_id(self.key_id)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if self.valid_from.tzinfo is None:
            raise ConfigError("valid_from must be timezone-aware")

    @classmethod
    def generate(
        cls, agency: str, key_id: str | None = None, *, valid_from: datetime | None = None
    ) -> AgencyKey:
        """A fresh key; the default key id is the agency plus a digest of the public key."""
        signing_key = SigningKey.generate()
        if key_id is None:
            digest = hashlib.sha256(bytes(signing_key.verify_key)).hexdigest()[:12]
            key_id = f"{agency}-{digest}"
        return cls(agency, key_id, signing_key, valid_from or _now_seconds())

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        signature: bytes = self.signing_key.sign(bytes(data)).signature
        return signature

    def public_entry(self) -> dict[str, Any]:
        """This key's entry for the key directory (``deploy/keys.yaml``)."""
        return {
            "agency": self.agency,
            "key_id": self.key_id,
            "public_key": b64(self.public_key),
            "valid_from": self.valid_from.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "valid_until": None,
            "revoked": False,
        }

    def file_name(self) -> str:
        return f"{self.agency}.{self.key_id}.key"

    def save(self, directory: Path | None = None) -> Path:
        """Write the private key to ``directory`` (default ~/.enlace/keys) with mode 0600."""
        target_dir = (directory or DEFAULT_KEY_DIR).expanduser()
        try:
            target_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create key directory {target_dir}: {exc}") from exc
        path = target_dir / self.file_name()
        entry = self.public_entry()
        body = {
            "agency": self.agency,
            "key_id": self.key_id,
            "valid_from": entry["valid_from"],
            "public_key": entry["public_key"],
            "private_key": b64(bytes(self.signing_key)),
        }
        text = (
            "# Enlace agency signing key. PRIVATE: keep it 0600, never commit or share it;\n"
            "# only the public entry (`enlace keys directory`) goes to deploy/keys.yaml.\n"
            + yaml.safe_dump(body, sort_keys=False)
        )
        try:
            # O_EXCL: never overwrite a key silently; 0600 from creation, not chmod-after.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigError(f"key file {path} already exists; refusing to overwrite") from None
        except OSError as exc:
            raise ConfigError(f"cannot write key file {path}: {exc}") from exc
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    @classmethod
    def load(cls, path: Path) -> AgencyKey:
        """Read a private key file; refuses files readable by group or others."""
        try:
            mode = path.stat().st_mode
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read key file {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"key file {path} is not valid YAML: {exc}") from exc
        if mode & _PRIVATE_BITS:
            raise ConfigError(
                f"key file {path} is accessible by group or others ({stat.filemode(mode)}); "
                f"run: chmod 600 {path}"
            )
        if not isinstance(raw, dict):
            raise ConfigError(f"key file {path} must be a mapping")
        try:
            seed = unb64(str(raw["private_key"]), SEED_SIZE, "private_key")
            key = cls(
                str(raw["agency"]),
                str(raw["key_id"]),
                SigningKey(seed),
                _parse_time(raw["valid_from"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"key file {path} is invalid: {exc}") from exc
        if "public_key" in raw and raw["public_key"] != b64(key.public_key):
            raise ConfigError(f"key file {path}: public_key does not match the private key")
        return key


def _parse_time(value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("valid_from must carry a timezone")
    return parsed.astimezone(UTC)
