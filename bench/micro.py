"""Per-bulletin CPU costs of the codec, signing and the router's logic (no Kafka).

Each operation runs on the sample bulletin (~1.4 KB encoded). The router's handler runs on
batches of records built in memory, so its cost is the router's Python work per bulletin
without any Kafka client cost; the same loop under cProfile gives its hotspots.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from bench.exchange import Exchange
from bench.report import MicroCost
from broker.admission import Limits, admit
from broker.metrics import RouterMetrics
from broker.replay import SeenIndex
from broker.routing import RouterHandler, RoutingContext
from broker.trust_state import TrustState
from enlace.core.topics import outbound
from schemas.codec import decode_audit, decode_bulletin, encode_audit, encode_bulletin
from schemas.envelope import Sealed, seal
from schemas.models import ThreatBulletin
from schemas.projection import tearline
from schemas.sealed import open_release, recipients_of, release_for, seal_sealed, view_sealed
from schemas.sealing import FULL, BoxCache
from tests.samples import sample_audit, sample_bulletin

HANDLER_BATCH = 100


def time_calls(fn: Callable[[], object], iterations: int) -> tuple[float, float]:
    """Mean and median microseconds of ``iterations`` calls of ``fn`` (after 5 warm-ups)."""
    for _ in range(min(5, iterations)):
        fn()
    samples: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(iterations):
        started = clock()
        fn()
        samples.append((clock() - started) / 1000.0)
    return statistics.fmean(samples), statistics.median(samples)


def _cost(operation: str, fn: Callable[[], object], iterations: int, note: str = "") -> MicroCost:
    mean, median = time_calls(fn, iterations)
    return MicroCost(operation, mean, median, iterations, note)


def record_of(
    sealed: Sealed, topic: str, offset: int, timestamp_ms: int
) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=timestamp_ms,
        timestamp_type=0,
        key=sealed.key,
        value=sealed.value,
        checksum=None,
        serialized_key_size=len(sealed.key),
        serialized_value_size=len(sealed.value),
        headers=sealed.headers,
    )


@dataclass
class HandlerRig:
    """A router handler over the exchange with in-memory state, fed unique sealed bulletins."""

    exchange: Exchange
    origin: str
    sealed: bool = True  # wire format 2, as publishers write by default

    def __post_init__(self) -> None:
        ex = self.exchange
        limits = Limits()
        context = RoutingContext(ex.registry, ex.policy, ex.directory, limits)
        self.handler = RouterHandler(
            context,
            TrustState(ex.policy, ex.registry.ids),
            SeenIndex(limits.max_past + limits.max_future),
            None,
            RouterMetrics(),
            partitions=lambda _topic: 1,  # one partition: every bulletin's owner is 0
        )
        self.tp = TopicPartition(outbound(self.origin), 0)
        self.offset = 0

    def records(self, count: int) -> list[ConsumerRecord[Any, Any]]:
        ex = self.exchange
        key = ex.keys[self.origin]
        now = datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        partners = [a for a in ex.registry.ids if a != self.origin]
        recipients = recipients_of(ex.directory, partners, now)
        boxes = BoxCache()
        out = []
        for _ in range(count):
            bulletin = sample_bulletin(self.origin)
            made = (
                seal_sealed(bulletin, key, recipients, boxes=boxes)
                if self.sealed
                else seal(bulletin, key)
            )
            out.append(record_of(made, self.tp.topic, self.offset, now_ms))
            self.offset += 1
        return out

    def run(self, records: list[ConsumerRecord[Any, Any]]) -> int:
        """Handle one batch as the engine would and apply its commit; return outputs made."""
        outcome = self.handler.handle(self.tp, records)
        for apply in outcome.on_commit:
            apply()
        return len(outcome.outputs)


def handler_cost(rig: HandlerRig, bulletins: int) -> tuple[MicroCost, float]:
    """Router logic per bulletin (batches of HANDLER_BATCH) and outputs per bulletin."""
    batches = [rig.records(HANDLER_BATCH) for _ in range(max(1, bulletins // HANDLER_BATCH))]
    rig.run(rig.records(HANDLER_BATCH))  # warm caches (policy index, scores)
    samples: list[float] = []
    outputs = 0
    for batch in batches:
        started = time.perf_counter_ns()
        outputs += rig.run(batch)
        samples.append((time.perf_counter_ns() - started) / 1000.0 / len(batch))
    count = len(batches) * HANDLER_BATCH
    cost = MicroCost(
        "router logic (handle: admit, replay, 10 decisions, audits)",
        statistics.fmean(samples),
        statistics.median(samples),
        count,
        f"batches of {HANDLER_BATCH}, in memory, INFO log line per bulletin",
    )
    return cost, outputs / count


def measure(exchange: Exchange, iterations: int) -> tuple[list[MicroCost], float]:
    """Every micro-cost; also the router's output records per bulletin."""
    origin = exchange.origins[0]
    key = exchange.keys[origin]
    bulletin: ThreatBulletin = sample_bulletin(origin)
    value = encode_bulletin(bulletin)
    sealed = seal(bulletin, key)
    signature = key.sign(value)
    directory = exchange.directory
    at = bulletin.issued_at
    audit = sample_audit(origin=origin, partner=exchange.origins[1])
    audit_bytes = encode_audit(audit)
    now = datetime.now(UTC)
    limits = Limits(max_future=timedelta(minutes=5))
    costs = [
        _cost("encode (Avro, framed)", lambda: encode_bulletin(bulletin), iterations,
              f"{len(value)} bytes"),
        _cost("decode (bounded, validated model)", lambda: decode_bulletin(value), iterations),
        _cost("tearline projection", lambda: tearline(bulletin), iterations),
        _cost("sign (Ed25519, once)", lambda: key.sign(value), iterations),
        _cost("seal (encode x2, project, sign x2)", lambda: seal(bulletin, key), iterations),
        _cost("verify (Ed25519, key directory)",
              lambda: directory.verify(origin, key.key_id, value, signature, at=at), iterations),
        _cost("router admission (verify x2, decode, re-encode tearline)",
              lambda: admit(origin, sealed.value, sealed.headers, keys=directory, limits=limits,
                            received_at=now, now=now), iterations),
        *_sealed_costs(exchange, bulletin, limits, now, iterations),
        _cost("audit record encode", lambda: encode_audit(audit), iterations,
              f"{len(audit_bytes)} bytes"),
        _cost("audit record decode (router trust feed reads each back)",
              lambda: decode_audit(audit_bytes), iterations),
    ]  # fmt: skip
    handler, outputs = handler_cost(HandlerRig(exchange, origin), max(HANDLER_BATCH, iterations))
    costs.append(handler)
    return costs, outputs


def _sealed_costs(
    exchange: Exchange, bulletin: ThreatBulletin, limits: Limits, now: datetime, iterations: int
) -> list[MicroCost]:
    """Wire format 2 (schemas/sealed.py): what each side pays for sealed bodies."""
    origin, partner = exchange.origins[0], exchange.origins[1]
    key, directory = exchange.keys[origin], exchange.directory
    recipients = recipients_of(directory, exchange.registry.ids, now)
    boxes = BoxCache()
    sealed = seal_sealed(bulletin, key, recipients, boxes=boxes)
    view = view_sealed(sealed.value)
    release = release_for(view, partner, FULL)
    assert release is not None
    partner_boxes = BoxCache()
    return [
        _cost(f"seal, wire format 2 ({len(view.wraps)} partners' wraps)",
              lambda: seal_sealed(bulletin, key, recipients, boxes=boxes), iterations,
              f"{len(sealed.value)} bytes"),
        _cost("router admission, wire format 2 (decode envelope, verify once)",
              lambda: admit(origin, sealed.value, sealed.headers, keys=directory, limits=limits,
                            received_at=now, now=now), iterations),
        _cost("release for one partner, wire format 2 (assemble)",
              lambda: release_for(view, partner, FULL), iterations, f"{len(release)} bytes"),
        _cost("partner opens a release (verify x2, unwrap, decrypt, decode)",
              lambda: open_release(release, sealed.headers, directory=directory,
                                   own=exchange.keys[partner], boxes=partner_boxes), iterations),
    ]  # fmt: skip


def profile_handler(exchange: Exchange, bulletins: int, top: int = 15) -> list[dict[str, Any]]:
    """cProfile of the router's handler over ``bulletins`` bulletins: the top functions by own
    time (sealing the inputs happens before profiling starts)."""
    rig = HandlerRig(exchange, exchange.origins[0])
    rig.run(rig.records(HANDLER_BATCH))
    batches = [rig.records(HANDLER_BATCH) for _ in range(max(1, bulletins // HANDLER_BATCH))]
    profiler = cProfile.Profile()
    profiler.enable()
    for batch in batches:
        rig.run(batch)
    profiler.disable()
    return top_functions(pstats.Stats(profiler), top)


PROJECT_PACKAGES = ("/broker/", "/schemas/", "/enlace/", "/producers/", "/aiokafka/")


def top_functions(
    stats: pstats.Stats, top: int, *, cumulative: bool = False
) -> list[dict[str, Any]]:
    """The ``top`` entries of ``stats`` by own time, or by cumulative time among the project's
    (and aiokafka's) functions, as plain dicts."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table untyped
    total = sum(entry[2] for entry in raw.values()) or 1.0
    items = list(raw.items())
    if cumulative:
        items = [i for i in items if any(p in i[0][0].replace("\\", "/") for p in PROJECT_PACKAGES)]
    column = 3 if cumulative else 2
    ordered = sorted(items, key=lambda item: item[1][column], reverse=True)[:top]
    return [
        {
            "function": _label(where),
            "calls": entry[1],
            "tottime_s": entry[2],
            "cumtime_s": entry[3],
            "share_own": entry[2] / total,
        }
        for where, entry in ordered
    ]


def _label(where: tuple[str, int, str]) -> str:
    filename, line, name = where
    if filename == "~":
        return name  # a builtin, e.g. <method 'sign' of ...>
    parts = filename.replace("\\", "/").split("/")
    short = "/".join(parts[-2:])
    return f"{short}:{line} {name}"
