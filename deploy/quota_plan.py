"""Per-agency Kafka client quotas: what the broker should hold, what it holds, what differs.

Only agencies are limited. The router carries every agency's traffic and operators read the
audit trail, so a quota on them would throttle everyone at once; they keep none, and neither
does a user default (``<default>``), which the router would inherit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from enlace.core.registry import Quotas

QUOTA_KEYS = ("producer_byte_rate", "consumer_byte_rate", "request_percentage")
_QUOTA_USER_LINE = re.compile(
    r"^Quota configs for user-principal '(?P<user>[^']+)' are (?P<configs>.*)$"
)


def parse_user_quotas(text: str) -> dict[str, dict[str, float]]:
    """User quotas in ``ConfigCommand --describe --entity-type users`` output (the same
    launch that lists SCRAM users)."""
    found: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _QUOTA_USER_LINE.match(line.strip())
        if not match:
            continue
        configs: dict[str, float] = {}
        for item in match["configs"].split(","):
            key, sep, value = item.strip().partition("=")
            if sep and key in QUOTA_KEYS:
                configs[key] = float(value)
        if configs:
            found[match["user"]] = configs
    return found


@dataclass(frozen=True)
class QuotaDiff:
    to_set: dict[str, dict[str, float]]  # user -> every quota it must hold
    to_clear: dict[str, tuple[str, ...]]  # user -> quota keys to delete


def quota_diff(
    desired: Mapping[str, Quotas],
    existing: Mapping[str, Mapping[str, float]],
    *,
    managed: Callable[[str], bool],
) -> QuotaDiff:
    """Set what differs; clear quotas on managed users the plan does not limit (a departed
    agency, or a router someone throttled by hand). Unmanaged users are left alone."""
    to_set = {
        user: quotas.kafka_configs()
        for user, quotas in sorted(desired.items())
        if dict(existing.get(user, {})) != quotas.kafka_configs()
    }
    to_clear = {
        user: tuple(k for k in QUOTA_KEYS if k in configs)
        for user, configs in sorted(existing.items())
        if user not in desired and managed(user) and configs
    }
    return QuotaDiff(to_set, to_clear)


def set_quota_args(user: str, configs: Mapping[str, float]) -> list[str]:
    """ConfigCommand arguments; quotas cannot share a launch with a SCRAM change."""
    values = ",".join(f"{k}={_number(v)}" for k, v in sorted(configs.items()))
    return ["--alter", "--add-config", values, "--entity-type", "users", "--entity-name", user]


def clear_quota_args(user: str, keys: tuple[str, ...]) -> list[str]:
    return [
        "--alter", "--delete-config", ",".join(keys), "--entity-type", "users",
        "--entity-name", user,
    ]  # fmt: skip


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)
