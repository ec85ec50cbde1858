"""A snapshot of the router's trust state, as bytes, and whether a router may start from it (pure).

An image holds everything :class:`broker.trust_state.TrustState` keeps (every pair's decayed
evidence and claim bucket, the releases still awaiting receipts or feedback, orphans, event
ids) and the source offsets it covers: folding the records from those offsets on gives the
state a full replay of history would (``tests/unit/test_trust_image.py`` proves it to 1e-9).

What an image depends on is written into it, and a router refuses one it cannot continue:

* the **fold basis**: every policy and limit value that changes how a record is folded (the
  half-lives, the receipt deadline, the claim budget and the claims' weights, the state's
  bounds). Values applied only when scoring (priors, agreements, other weights, the cap,
  reciprocity's weight, thresholds) may change freely: a new policy of that kind starts from
  the image. Any other change means a full replay (``fold_changed``).
* the **keys** it trusted: a key revoked, removed or shortened since means the events it
  signed must be re-judged (``key_revoked``), as a full replay re-judges them.

The encoding is JSON (exact for floats: ``repr`` round-trips) compressed with zlib; times are
integer microseconds since the epoch, so every datetime comes back equal.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from broker.claims import Bucket
from broker.evidence import EvidenceClass, PairEvidence
from broker.policy import Policy
from broker.trust_state import Orphan, Release, TrustLimits, TrustState
from enlace.core.errors import ValidationError
from schemas.key_directory import KeyDirectory
from schemas.vocab import TrustEventKind

FORMAT = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

# Why a router did not start from an image (bounded: these are metric labels).
REFUSED_FORMAT = "format"
REFUSED_FOLD = "fold_changed"
REFUSED_KEYS = "key_revoked"

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> next offset to fold


def to_us(at: datetime) -> int:
    return (at - _EPOCH) // _US


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def fold_basis(policy: Policy, limits: TrustLimits) -> dict[str, Any]:
    """Every value a record's fold depends on (see the module docstring)."""
    ev = policy.evidence
    return {
        "format": FORMAT,
        "positive_half_life_days": ev.positive_half_life_days,
        "negative_half_life_days": ev.negative_half_life_days,
        "reciprocity_half_life_days": ev.reciprocity.half_life_days,
        "receipt_deadline_minutes": ev.receipt_deadline_minutes,
        "claims_rate_per_day": ev.claims.rate_per_day,
        "claims_burst": ev.claims.burst,
        "claim_weights": {c.value: ev.weights.of(c) for c in EvidenceClass if c.claim},
        "max_past_s": limits.max_past.total_seconds(),
        "max_future_s": limits.max_future.total_seconds(),
        "orphans_per_reporter": limits.orphans_per_reporter,
        "orphan_wait_s": limits.orphan_wait.total_seconds(),
        "event_ids_per_reporter": limits.event_ids_per_reporter,
        "release_memory_s": limits.release_memory.total_seconds(),
        "releases_per_partner": limits.releases_per_partner,
    }


def fingerprint(basis: Mapping[str, Any]) -> str:
    canonical = json.dumps(basis, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class TrustImage:
    """A decoded snapshot: the state's parts plus what it covers and depends on."""

    created_at: datetime
    basis: dict[str, Any]
    offsets: Offsets
    keys: dict[str, tuple[int, int | None]]  # key id -> (valid_from, valid_until) in µs
    body: dict[str, Any] = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.basis)

    @property
    def releases(self) -> int:
        return len(self.body["releases"])


def trusted_keys(keys: KeyDirectory) -> dict[str, tuple[int, int | None]]:
    return {
        e.key_id: (to_us(e.valid_from), to_us(e.valid_until) if e.valid_until else None)
        for e in keys
        if not e.revoked
    }


def capture(state: TrustState, offsets: Offsets, keys: KeyDirectory, now: datetime) -> TrustImage:
    """The state as it is (synchronous: no record can be folded halfway through)."""
    pairs, buckets = state.ledger.export()
    agencies = sorted(_agencies_in(state, [*pairs, *buckets]))
    index = {a: i for i, a in enumerate(agencies)}
    releases = []
    for order in state.release_order.values():
        for key in order:
            release = state.releases.get(key)
            if release is None:
                continue
            originator, partner, bulletin_id = key
            flags = int(release.awaiting) | int(release.missed) << 1 | release.counted << 2
            row = [index[originator], index[partner], bulletin_id, to_us(release.at), flags]
            releases.append(row)
    orphans = [
        [index[k[0]], index[k[1]], k[2], event_id, o.kind.value, to_us(o.observed)]
        for waiting in state.orphans_by_reporter.values()
        for (k, event_id), o in waiting.items()
    ]
    event_ids = [
        [index[reporter], event_id, to_us(observed)]
        for reporter, ids in state.event_ids.items()
        for event_id, observed in ids.items()
    ]
    body = {
        "agencies": agencies,
        "events_applied": state.events_applied,
        "pairs": [
            [index[o], index[p], e.as_of, list(e.counts), e.shared_out, e.shared_in]
            for (o, p), e in pairs.items()
        ],
        "buckets": [
            [index[o], index[p], b.tokens, b.as_of, b.fresh] for (o, p), b in buckets.items()
        ],
        "releases": releases,
        "orphans": orphans,
        "event_ids": event_ids,
    }
    basis = fold_basis(state.policy, state.limits)
    return TrustImage(now, basis, dict(offsets), trusted_keys(keys), body)


def _agencies_in(state: TrustState, pairs: list[tuple[str, str]]) -> set[str]:
    found = {a for pair in pairs for a in pair}
    found.update(a for key in state.releases for a in key[:2])
    found.update(state.event_ids)
    for waiting in state.orphans_by_reporter.values():
        found.update(a for (key, _event_id) in waiting for a in key[:2])
    return found


def refusal(image: TrustImage, state: TrustState, keys: KeyDirectory) -> tuple[str, str] | None:
    """Why ``state`` (its policy, limits and ``keys``) cannot start from ``image``, or None."""
    if image.basis.get("format") != FORMAT:
        return REFUSED_FORMAT, f"snapshot format {image.basis.get('format')}, not {FORMAT}"
    basis = fold_basis(state.policy, state.limits)
    if image.fingerprint != fingerprint(basis):
        changed = sorted(k for k in basis.keys() | image.basis.keys()
                         if basis.get(k) != image.basis.get(k))  # fmt: skip
        return REFUSED_FOLD, "changed since the snapshot: " + ", ".join(changed)
    now_trusted = trusted_keys(keys)
    for key_id, (valid_from, valid_until) in image.keys.items():
        current = now_trusted.get(key_id)
        if current is None:
            return REFUSED_KEYS, f"key {key_id!r} was revoked or removed since the snapshot"
        if current[0] > valid_from or (
            current[1] is not None and (valid_until is None or current[1] < valid_until)
        ):
            return REFUSED_KEYS, f"key {key_id!r} is valid for less time than at the snapshot"
    return None


def restore(state: TrustState, image: TrustImage, agencies: Iterable[str] | None) -> None:
    """Fill a fresh ``state`` from ``image``; entries naming agencies no longer in the
    registry are dropped (a full replay would refuse their records)."""
    body = image.body
    names: list[str] = body["agencies"]
    known = set(agencies) if agencies is not None else set(names)

    def ids(*indexes: int) -> tuple[str, ...] | None:
        found = tuple(names[i] for i in indexes)
        return found if all(a in known for a in found) else None

    pairs: dict[tuple[str, str], PairEvidence] = {}
    for o, p, as_of, counts, shared_out, shared_in in body["pairs"]:
        if (pair := ids(o, p)) is not None:
            pairs[pair[0], pair[1]] = PairEvidence(as_of, tuple(counts), shared_out, shared_in)
    buckets: dict[tuple[str, str], Bucket] = {}
    for o, p, tokens, as_of, fresh in body["buckets"]:
        if (pair := ids(o, p)) is not None:
            buckets[pair[0], pair[1]] = Bucket(tokens, as_of, fresh)
    state.ledger.load(pairs, buckets)
    for o, p, bulletin_id, at, flags in body["releases"]:
        if (pair := ids(o, p)) is None:
            continue
        key = (pair[0], pair[1], bulletin_id)
        state.releases[key] = Release(from_us(at), bool(flags & 1), bool(flags & 2), flags >> 2)
        state.release_order.setdefault(pair[1], deque()).append(key)
    for o, reporter, bulletin_id, event_id, kind, observed in body["orphans"]:
        if (pair := ids(o, reporter)) is not None:
            waiting = state.orphans_by_reporter.setdefault(pair[1], {})
            waiting[(pair[0], pair[1], bulletin_id), event_id] = Orphan(
                TrustEventKind(kind), from_us(observed)
            )
    for reporter, event_id, observed in body["event_ids"]:
        if (found := ids(reporter)) is not None:
            state.event_ids.setdefault(found[0], {})[event_id] = from_us(observed)
    state.events_applied = body["events_applied"]
    state.restored()


def encode(image: TrustImage) -> bytes:
    document = {
        "created_at": to_us(image.created_at),
        "basis": image.basis,
        "offsets": [[t, p, o] for (t, p), o in sorted(image.offsets.items())],
        "keys": {k: list(v) for k, v in sorted(image.keys.items())},
        "body": image.body,
    }
    raw = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    return zlib.compress(raw, 6)


def decode(blob: bytes) -> TrustImage:
    """The image in ``blob``; raises :class:`ValidationError` when it is not one."""
    try:
        document = json.loads(zlib.decompress(blob))
        return TrustImage(
            from_us(document["created_at"]),
            document["basis"],
            {(t, p): o for t, p, o in document["offsets"]},
            {k: (v[0], v[1]) for k, v in document["keys"].items()},
            document["body"],
        )
    except (zlib.error, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValidationError(f"not a trust snapshot: {exc!r}"[:300]) from exc
