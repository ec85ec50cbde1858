"""Every name and format of the exchange in Kafka, and the topics' idempotent provisioning.

Topics (docs/design.md, "Kafka topics"), the router's and consumers' group ids, the router's
transactional ids and the owner partition of a bulletin are made here and nowhere else: the
services' settings, the engine, the ACL plan, the manifests and the tests all call these.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from enlace.core.clock import MAX_FUTURE, MAX_PAST
from enlace.core.errors import BrokerError
from enlace.core.logs import get_logger
from enlace.core.partitioning import murmur2
from enlace.core.settings import KafkaSettings

OUTBOUND_PREFIX = "enlace.outbound."
FEED_PREFIX = "enlace.feed."
RECEIPTS_PREFIX = "enlace.receipts."
TRUST_SCORES = "enlace.trust.scores"
AUDIT = "enlace.audit"
DEADLETTER = "enlace.deadletter"
# Router-owned state (not in docs/design.md's table): ids already routed, for replay protection.
ROUTER_SEEN = "enlace.router.seen"
# Groups and transactional ids. Prefixes end in a delimiter, so a prefixed ACL on them cannot
# match a neighbour ("enlace.router." does not match "enlace.routerX").
ROUTER_PREFIX = "enlace.router."
CONSUMER_GROUP_PREFIX = "enlace.consumer."
DAY_MS = 24 * 3600 * 1000
# Compacted and time-bounded: the router only needs ids younger than its replay window.
SEEN_RETENTION_MS = 8 * DAY_MS
# Kafka's default retention (7 days) would silently drop what an agency offline for a week
# has not read yet, and the audit trail and trust evidence are meant to outlive it.
RETENTION_MS = {
    "outbound": 14 * DAY_MS,  # the router reads within seconds; two weeks covers an outage
    "feed": 30 * DAY_MS,  # a partner may be offline for weeks
    "receipts": -1,  # trust evidence: incidents weigh for years (180-day half-life)
    "audit": -1,  # the audit trail is kept
    "deadletter": 90 * DAY_MS,
}

log = get_logger(__name__)


def outbound(agency: str) -> str:
    return f"{OUTBOUND_PREFIX}{agency}"


def feed(agency: str) -> str:
    return f"{FEED_PREFIX}{agency}"


def receipts(agency: str) -> str:
    return f"{RECEIPTS_PREFIX}{agency}"


def router_group(prefix: str = ROUTER_PREFIX) -> str:
    """The consumer group every router instance joins."""
    return f"{prefix}routers"


def router_transactional_id(topic: str, partition: int, prefix: str = ROUTER_PREFIX) -> str:
    """The transactional id of one input partition's producer (one per partition: aiokafka
    speaks the v0 protocol, so whoever owns the partition owns the id and fences the last)."""
    return f"{prefix}{topic}.{partition}"


def trust_snapshots_topic(prefix: str = ROUTER_PREFIX) -> str:
    """Snapshots of the router's trust state (broker/snapshots.py): a router starts from the
    newest. Named by the router prefix, like the group: one exchange's routers, one topic."""
    return f"{prefix}trust"


def trust_snapshot_transactional_id(prefix: str = ROUTER_PREFIX) -> str:
    """The one transactional id trust snapshots are written with: a router that takes the
    writer's role fences whoever held it (no partition of any topic is named like this)."""
    return f"{prefix}trust-snapshots"


def consumer_group(agency: str, topic_prefix: str = "") -> str:
    """The partner consumer's group: one per agency (``topic_prefix`` namespaces tests)."""
    return f"{topic_prefix}{CONSUMER_GROUP_PREFIX}{agency}"


def agency_of(topic: str) -> str:
    """The agency of a per-agency topic: ``enlace.feed.cr-msp`` → ``cr-msp``."""
    for prefix in (OUTBOUND_PREFIX, FEED_PREFIX, RECEIPTS_PREFIX):
        if topic.startswith(prefix):
            return topic.removeprefix(prefix)
    raise ValueError(f"{topic!r} is not a per-agency topic")


def owner_partition(bulletin_id: str, partitions: int) -> int:
    """The one partition of an outbound topic a bulletin belongs on: Kafka's default keyed
    partitioner (murmur2 of the key, the bulletin id; Java's and aiokafka's, librdkafka's
    ``murmur2_random``). The router refuses a bulletin anywhere else (``wrong_partition``), so
    each bulletin id has one owner and is released at most once per partner."""
    return (murmur2(bulletin_id.encode("ascii")) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    configs: tuple[tuple[str, str], ...] = ()


def exchange_topics(
    agencies: Iterable[str],
    *,
    partitions: int,
    replication: int,
    min_insync: int,
    router_prefix: str = ROUTER_PREFIX,
) -> list[TopicSpec]:
    """Every topic docs/design.md names, for these agencies."""
    common = (("min.insync.replicas", str(min_insync)),)

    def kept(kind: str) -> tuple[tuple[str, str], ...]:
        configs: tuple[tuple[str, str], ...] = (*common, ("retention.ms", str(RETENTION_MS[kind])))
        if kind == "outbound":
            # The broker refuses (INVALID_TIMESTAMP) a record stamped outside the router's
            # admission window: a publisher whose clock is off learns it from Kafka itself
            # (producers/skew.py), and nothing the router would dead-letter for it is stored.
            configs = (
                *configs,
                (TIMESTAMP_AFTER, str(int(MAX_FUTURE.total_seconds() * 1000))),
                (TIMESTAMP_BEFORE, str(int(MAX_PAST.total_seconds() * 1000))),
            )
        if kind == "receipts":
            # The router dates trust evidence by arrival: the broker sets the timestamp, the
            # reporter cannot (README, "Threat model").
            configs = (*configs, ("message.timestamp.type", "LogAppendTime"))
        return configs

    specs: list[TopicSpec] = []
    for agency in agencies:
        specs.extend(
            TopicSpec(name, partitions, replication, kept(kind))
            for kind, name in (
                ("outbound", outbound(agency)),
                ("feed", feed(agency)),
                ("receipts", receipts(agency)),
            )
        )
    specs.append(
        TopicSpec(
            TRUST_SCORES,
            1,
            replication,
            (*common, ("cleanup.policy", "compact"), ("min.cleanable.dirty.ratio", "0.1")),
        )
    )
    specs.append(TopicSpec(AUDIT, partitions, replication, kept("audit")))
    specs.append(TopicSpec(DEADLETTER, 1, replication, kept("deadletter")))
    specs.append(
        TopicSpec(
            ROUTER_SEEN,
            partitions,
            replication,
            (
                *common,
                ("cleanup.policy", "compact,delete"),
                ("retention.ms", str(SEEN_RETENTION_MS)),
            ),
        )
    )
    specs.append(
        TopicSpec(
            trust_snapshots_topic(router_prefix),
            1,
            replication,
            (
                *common,
                ("cleanup.policy", "compact"),
                ("min.cleanable.dirty.ratio", "0.1"),
                # Roll hourly so the cleaner can drop superseded snapshots from closed segments.
                ("segment.ms", str(3600 * 1000)),
            ),
        )
    )
    return specs


async def ensure_topics(settings: KafkaSettings, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Idempotent."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=30_000)
    try:
        await admin.start()
        specs = list(specs)
        existing = set(await admin.list_topics())
        await _enforce_timestamps(admin, [s for s in specs if s.name in existing])
        wanted = [spec for spec in specs if spec.name not in existing]
        if not wanted:
            return []
        new = [
            NewTopic(
                name=spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication,
                topic_configs=dict(spec.configs),
            )
            for spec in wanted
        ]
        try:
            response = await admin.create_topics(new, timeout_ms=30_000)
        except TopicAlreadyExistsError:
            # Another provisioner raced us; the end state is what we wanted.
            log.info("topics_race", topics=len(new))
        else:
            _raise_topic_errors(response.to_object()["topic_errors"])
        await _await_visible(admin, [spec.name for spec in wanted])
        log.info("topics_created", count=len(wanted))
        return [spec.name for spec in wanted]
    except KafkaError as exc:
        raise BrokerError(f"topic provisioning failed: {exc!r}") from exc
    finally:
        await admin.close()


def _raise_topic_errors(results: list[dict[str, Any]]) -> None:
    """CreateTopics answers per topic and aiokafka raises for none of them: a topic the
    cluster could not create (too few brokers registered for its replication, a bad config)
    must not pass as created. One that already exists (a racing provisioner) is fine."""
    refused = [
        (r["topic"], r["error_code"], r.get("error_message") or "")
        for r in results
        if r["error_code"] not in (0, TopicAlreadyExistsError.errno)
    ]
    if refused:
        shown = "; ".join(
            f"{topic}: {for_code(code).__name__} {message}".strip()
            for topic, code, message in refused[:3]
        )
        more = f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
        raise BrokerError(f"the cluster refused to create {len(refused)} topic(s): {shown}{more}")


TOPICS_VISIBLE_WITHIN_S = 30.0


async def _await_visible(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """The controller has created them; a broker serves them once its metadata caught up,
    and on a multi-node cluster that can lag a moment. Created means usable: a client
    started right after must not find them missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TOPICS_VISIBLE_WITHIN_S
    while True:
        described = await admin.describe_topics(names)
        visible = {d["topic"] for d in described if d["error_code"] == 0 and d["partitions"]}
        pending = [name for name in names if name not in visible]
        if not pending:
            return
        if loop.time() > deadline:
            raise BrokerError(f"topics created but not served after 30 s: {', '.join(pending[:5])}")
        await asyncio.sleep(0.2)


TIMESTAMP_TYPE = "message.timestamp.type"
TIMESTAMP_AFTER = "message.timestamp.after.max.ms"
TIMESTAMP_BEFORE = "message.timestamp.before.max.ms"
# The timestamp rules provisioning aligns on topics that existed before the rule.
TIMESTAMP_KEYS = (TIMESTAMP_TYPE, TIMESTAMP_AFTER, TIMESTAMP_BEFORE)


async def _timestamp_configs(
    admin: AIOKafkaAdminClient, topics: Iterable[str]
) -> dict[str, dict[str, str]]:
    wanted = dict.fromkeys(TIMESTAMP_KEYS)
    described = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, wanted) for name in topics]
    )
    found: dict[str, dict[str, str]] = {}
    for response in described:
        for _error, _message, _kind, name, entries in response.resources:
            found[name] = {entry[0]: entry[1] for entry in entries if entry[0] in wanted}
    return found


async def _timestamp_types(admin: AIOKafkaAdminClient, topics: Iterable[str]) -> dict[str, str]:
    return {
        name: configs[TIMESTAMP_TYPE]
        for name, configs in (await _timestamp_configs(admin, topics)).items()
        if TIMESTAMP_TYPE in configs
    }


async def writer_timestamped(settings: KafkaSettings, topics: Iterable[str]) -> list[str]:
    """The topics among ``topics`` whose records keep the writer's timestamp (CreateTime)."""
    names = list(topics)
    if not names:
        return []
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=30_000)
    try:
        await admin.start()
        types = await _timestamp_types(admin, names)
    except KafkaError as exc:
        raise BrokerError(f"cannot describe topic configs: {exc!r}") from exc
    finally:
        await admin.close()
    return sorted(name for name, kind in types.items() if kind != "LogAppendTime")


async def _enforce_timestamps(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Topics that existed before their spec asked for broker-set timestamps or timestamp
    bounds get them: the router's dating of trust evidence and the publishers' clock check
    rely on them. Their other settings are set to the spec too (Kafka's non-incremental
    AlterConfigs replaces a topic's dynamic configs)."""

    def rules(spec: TopicSpec) -> dict[str, str]:
        return {key: value for key, value in spec.configs if key in TIMESTAMP_KEYS}

    wanted = {s.name: s for s in specs if rules(s)}
    if not wanted:
        return
    described = await _timestamp_configs(admin, wanted)
    stale = [
        name
        for name, found in described.items()
        if any(found.get(key) != value for key, value in rules(wanted[name]).items())
    ]
    if not stale:
        return
    await admin.alter_configs(
        [
            ConfigResource(ConfigResourceType.TOPIC, name, dict(wanted[name].configs))
            for name in stale
        ]
    )
    log.info("topics_timestamps_enforced", topics=len(stale))


async def partitions_of(settings: KafkaSettings, topics: Iterable[str]) -> dict[str, list[int]]:
    """Partition ids of each topic; BrokerError names the topics that do not exist.

    (A group-less aiokafka consumer only knows metadata of topics it already follows.)
    """
    names = list(topics)
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=30_000)
    try:
        await admin.start()
        described = await admin.describe_topics(names)
    except KafkaError as exc:
        raise BrokerError(f"cannot describe topics: {exc!r}") from exc
    finally:
        await admin.close()
    found = {
        d["topic"]: sorted(p["partition"] for p in d["partitions"])
        for d in described
        if d["error_code"] == 0
    }
    missing = [name for name in names if name not in found]
    if missing:
        raise BrokerError(
            f"topic(s) missing: {', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}; "
            "run `enlace topics create`"
        )
    return found
