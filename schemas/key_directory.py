"""The key directory (``deploy/keys.yaml``): every agency's public keys, by key id.

Format::

    pa-senafront:                       # agency id
      pa-senafront-3f9c0d2a7b11:        # key id, unique across the directory
        public_key: <base64 Ed25519 public key>
        valid_from: "2026-01-01T00:00:00Z"
        valid_until: null               # or a time: the key signs nothing from then on
        revoked: false                  # true: nothing it signed verifies any more

Verification is a pure function of the directory, the bytes, the signature and ``at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import AfterValidator, Field
from pydantic import ValidationError as PydanticValidationError

from enlace.core.errors import BadSignature, ConfigError, KeyNotOfAgency, RevokedKey, UnknownKey
from schemas.agency_key import SEED_SIZE, AgencyKey, check_key_id, unb64
from schemas.fields import AgencyId, UtcTime, WireModel

KeyId = Annotated[str, AfterValidator(check_key_id)]

_HEADER = """\
# Enlace key directory: every agency's Ed25519 public keys, by key id.
# Services verify each record's enlace-sig against the key named by enlace-key-id, which must
# belong to the agency in enlace-origin, not be revoked, and be valid at the record's time.
# Build it with `enlace keys directory --from DIR --out keys.yaml`; never put private keys here.
"""


def _public_key(value: str) -> str:
    unb64(value, SEED_SIZE, "public_key")
    return value


class KeyEntry(WireModel):
    """One public key in the directory."""

    agency: AgencyId
    key_id: KeyId
    public_key: Annotated[str, AfterValidator(_public_key)]
    valid_from: UtcTime
    valid_until: UtcTime | None = None
    revoked: bool = False
    note: str | None = Field(default=None, max_length=500)

    def verify_key(self) -> VerifyKey:
        return VerifyKey(unb64(self.public_key, SEED_SIZE, "public_key"))

    def valid_at(self, at: datetime) -> bool:
        return self.valid_from <= at and (self.valid_until is None or at < self.valid_until)


class KeyDirectory:
    """Public keys by key id; key ids are unique across agencies."""

    def __init__(self, entries: Iterable[KeyEntry] = ()) -> None:
        self._entries: dict[str, KeyEntry] = {}
        self._verify_keys: dict[str, VerifyKey] = {}
        for entry in entries:
            if entry.key_id in self._entries:
                raise ConfigError(f"key id {entry.key_id!r} appears twice in the key directory")
            self._entries[entry.key_id] = entry
            self._verify_keys[entry.key_id] = entry.verify_key()

    @classmethod
    def from_keys(cls, keys: Iterable[AgencyKey | KeyEntry | Mapping[str, Any]]) -> KeyDirectory:
        """A directory of the public halves of ``keys`` (keys, entries or public-entry dicts)."""
        entries: list[KeyEntry] = []
        for key in keys:
            if isinstance(key, KeyEntry):
                entries.append(key)
                continue
            raw = key.public_entry() if isinstance(key, AgencyKey) else dict(key)
            entries.append(_entry(raw, f"key {raw.get('key_id')!r}"))
        return cls(entries)

    @classmethod
    def from_mapping(cls, raw: Any, source: str = "key directory") -> KeyDirectory:
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source} must map agency ids to their keys")
        entries: list[KeyEntry] = []
        for agency, keys in raw.items():
            if not isinstance(keys, Mapping):
                raise ConfigError(f"{source}: {agency!r} must map key ids to key entries")
            for key_id, fields in keys.items():
                if not isinstance(fields, Mapping):
                    raise ConfigError(f"{source}: key {key_id!r} must be a mapping")
                raw_entry = {**fields, "agency": agency, "key_id": key_id}
                entries.append(_entry(raw_entry, f"{source}: key {key_id!r}"))
        return cls(entries)

    @classmethod
    def load(cls, path: Path) -> KeyDirectory:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read key directory {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"key directory {path} is not valid YAML: {exc}") from exc
        return cls.from_mapping(raw, str(path))

    def to_mapping(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for entry in sorted(self._entries.values(), key=lambda e: (e.agency, e.key_id)):
            fields: dict[str, Any] = {
                "public_key": entry.public_key,
                "valid_from": _iso(entry.valid_from),
                "valid_until": _iso(entry.valid_until) if entry.valid_until else None,
                "revoked": entry.revoked,
            }
            if entry.note:
                fields["note"] = entry.note
            out.setdefault(entry.agency, {})[entry.key_id] = fields
        return out

    def to_yaml(self) -> str:
        body = yaml.safe_dump(self.to_mapping(), sort_keys=False, allow_unicode=True)
        return _HEADER + ("{}\n" if not self._entries else body)

    def dump(self, path: Path) -> None:
        try:
            path.write_text(self.to_yaml(), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write key directory {path}: {exc}") from exc

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[KeyEntry]:
        return iter(self._entries.values())

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._entries

    def get(self, key_id: str) -> KeyEntry:
        try:
            return self._entries[key_id]
        except KeyError:
            raise UnknownKey(f"key id {key_id!r} is not in the key directory") from None

    def revoke(self, key_id: str) -> KeyDirectory:
        """A copy with ``key_id`` revoked."""
        revoked = self.get(key_id).model_copy(update={"revoked": True})
        return KeyDirectory(revoked if e.key_id == key_id else e for e in self)

    def current_key(self, agency: str, at: datetime) -> KeyEntry | None:
        """The agency's newest key valid at ``at`` and not revoked (what to seal for)."""
        usable = [e for e in self._entries.values() if e.agency == agency and not e.revoked]
        valid = [e for e in usable if e.valid_at(at)]
        return max(valid, key=lambda e: (e.valid_from, e.key_id), default=None)

    def verify(
        self, agency: str, key_id: str, data: bytes, signature: bytes, *, at: datetime
    ) -> None:
        """Return if ``signature`` by ``key_id`` of ``agency`` over ``data`` holds at ``at``.

        Raises UnknownKey, KeyNotOfAgency, RevokedKey (revoked or outside its validity
        window) or BadSignature, checked in that order.
        """
        if at.tzinfo is None:
            raise ValueError("at must be timezone-aware")
        entry = self.get(key_id)
        if entry.agency != agency:
            raise KeyNotOfAgency(f"key {key_id!r} belongs to {entry.agency!r}, not {agency!r}")
        if entry.revoked:
            raise RevokedKey(f"key {key_id!r} of {agency!r} is revoked")
        if not entry.valid_at(at):
            until = _iso(entry.valid_until) if entry.valid_until else "open"
            raise RevokedKey(
                f"key {key_id!r} of {agency!r} is not valid at {_iso(at)} "
                f"(valid from {_iso(entry.valid_from)} until {until})"
            )
        try:
            self._verify_keys[key_id].verify(bytes(data), bytes(signature))
        except (BadSignatureError, ValueError, TypeError) as exc:
            raise BadSignature(f"signature by key {key_id!r} of {agency!r} does not match") from exc


def _entry(raw: Mapping[str, Any], where: str) -> KeyEntry:
    try:
        return KeyEntry.model_validate(raw)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise ConfigError(f"{where} is invalid: {problems}") from exc


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
