"""Originator signatures: Ed25519 agency keys (PyNaCl) and the key directory that checks them."""

from __future__ import annotations

from schemas.agency_key import DEFAULT_KEY_DIR, KEY_ID_PATTERN, AgencyKey, check_key_id
from schemas.key_directory import KeyDirectory, KeyEntry

__all__ = [
    "DEFAULT_KEY_DIR",
    "KEY_ID_PATTERN",
    "AgencyKey",
    "KeyDirectory",
    "KeyEntry",
    "check_key_id",
]
