"""Who may do what on the exchange's Kafka: principals and the ACL plan (pure, no I/O).

docs/design.md, "Security": an agency writes only its own outbound and receipts topics and reads
only its own feed; only the router reads outbound topics and writes feeds; operators read the
audit trail, dead letters and trust scores. Everything else is denied by the broker
(``allow.everyone.if.no.acl.found=false``), so the plan lists only ALLOW bindings.

Per-agency bindings are LITERAL: a prefixed ``enlace.feed.cr-msp`` would also match a later
agency ``cr-msp2``. The router's bindings are PREFIXED on names that end in the delimiter
(``enlace.feed.``), so they cover agencies that join later without a new ACL.

This module also renders the plan as ``org.apache.kafka.tools.AclCommand`` argument lists
(as few as possible: every JVM launch costs about a second) and parses the output of
``AclCommand --list`` and ``ConfigCommand --describe --entity-type users`` back.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from enlace.core import topics
from enlace.core.registry import AGENCY_ID_PATTERN
from enlace.core.settings import SCRAM_MECHANISM

ROUTER_USER = "enlace-router"
OPERATOR_USER = "enlace-operator"
DEFAULT_ROUTER_PREFIX = topics.ROUTER_PREFIX
CONSUMER_GROUP_PREFIX = topics.CONSUMER_GROUP_PREFIX
# A prefix must end in one of these, or "enlace.router" would also grant "enlace.routerX...".
PREFIX_DELIMITERS = (".", "-", "_")


class ResourceType(StrEnum):
    TOPIC = "TOPIC"
    GROUP = "GROUP"
    TRANSACTIONAL_ID = "TRANSACTIONAL_ID"


class PatternType(StrEnum):
    LITERAL = "LITERAL"
    PREFIXED = "PREFIXED"


class Operation(StrEnum):
    READ = "READ"
    WRITE = "WRITE"
    DESCRIBE = "DESCRIBE"


class Permission(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"


# AclCommand's flag for each resource type.
_RESOURCE_FLAG = {
    ResourceType.TOPIC: "--topic",
    ResourceType.GROUP: "--group",
    ResourceType.TRANSACTIONAL_ID: "--transactional-id",
}


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ACL entry: ``principal`` may (or may not) do ``operation`` on a resource pattern."""

    principal: str
    resource_type: ResourceType
    pattern_type: PatternType
    resource_name: str
    operation: Operation
    permission: Permission = Permission.ALLOW

    def matches(self, resource_type: ResourceType, name: str) -> bool:
        """Whether this binding's pattern covers the resource ``name`` (as the broker matches)."""
        if resource_type is not self.resource_type:
            return False
        if self.pattern_type is PatternType.LITERAL:
            return name == self.resource_name
        return name.startswith(self.resource_name)


def user(name: str) -> str:
    """The Kafka principal of a SCRAM user name."""
    return f"User:{name}"


def check_prefix(prefix: str) -> str:
    """A prefixed ACL name must end in a delimiter; return it or raise ``ValueError``."""
    if not prefix or not prefix.endswith(PREFIX_DELIMITERS):
        raise ValueError(
            f"prefix {prefix!r} must be non-empty and end in one of {' '.join(PREFIX_DELIMITERS)}"
            " so it cannot grant names that merely start alike"
        )
    return prefix


def principals(agencies: Iterable[str]) -> list[str]:
    """The SCRAM users of the exchange: each agency, the router and the operators."""
    return [*agencies, ROUTER_USER, OPERATOR_USER]


def is_managed_principal(principal: str) -> bool:
    """Principals this plan owns (others, like ``User:admin``, are never pruned)."""
    name = principal.removeprefix("User:")
    return principal.startswith("User:") and (
        name in (ROUTER_USER, OPERATOR_USER) or AGENCY_ID_PATTERN.fullmatch(name) is not None
    )


def _grant(
    principal: str,
    resource_type: ResourceType,
    pattern: PatternType,
    names: Iterable[str],
    operations: Iterable[Operation],
) -> list[AclBinding]:
    return [
        AclBinding(principal, resource_type, pattern, name, op)
        for name in names
        for op in operations
    ]


def agency_bindings(agency: str) -> list[AclBinding]:
    who = user(agency)
    write = (Operation.WRITE, Operation.DESCRIBE)
    read = (Operation.READ, Operation.DESCRIBE)
    own_writes = [topics.outbound(agency), topics.receipts(agency)]
    return [
        *_grant(who, ResourceType.TOPIC, PatternType.LITERAL, own_writes, write),
        *_grant(who, ResourceType.TOPIC, PatternType.LITERAL, [topics.feed(agency)], read),
        # Describe is implied by Read; granted explicitly so feed and group share one launch.
        *_grant(
            who, ResourceType.GROUP, PatternType.LITERAL, [topics.consumer_group(agency)], read
        ),
    ]


def router_bindings(router_prefix: str = DEFAULT_ROUTER_PREFIX) -> list[AclBinding]:
    check_prefix(router_prefix)
    who = user(ROUTER_USER)
    read = (Operation.READ, Operation.DESCRIBE)
    write = (Operation.WRITE, Operation.DESCRIBE)
    both = (Operation.READ, Operation.WRITE, Operation.DESCRIBE)
    pre, lit = PatternType.PREFIXED, PatternType.LITERAL
    inputs = [topics.OUTBOUND_PREFIX, topics.RECEIPTS_PREFIX]
    # Audit and seen ids are re-read at start; trust scores are read back by the router.
    own_state = [
        topics.AUDIT,
        topics.ROUTER_SEEN,
        topics.TRUST_SCORES,
        topics.trust_snapshots_topic(router_prefix),
    ]
    return [
        *_grant(who, ResourceType.TOPIC, pre, inputs, read),
        # Read on its group: the consumer group and send_offsets_to_transaction.
        *_grant(who, ResourceType.GROUP, pre, [router_prefix], read),
        *_grant(who, ResourceType.TOPIC, pre, [topics.FEED_PREFIX], write),
        *_grant(who, ResourceType.TRANSACTIONAL_ID, pre, [router_prefix], write),
        *_grant(who, ResourceType.TOPIC, lit, own_state, both),
        *_grant(who, ResourceType.TOPIC, lit, [topics.DEADLETTER], write),
    ]


def operator_bindings() -> list[AclBinding]:
    who = user(OPERATOR_USER)
    read = (Operation.READ, Operation.DESCRIBE)
    describe = (Operation.DESCRIBE,)
    pre = PatternType.PREFIXED
    return [
        *_grant(
            who,
            ResourceType.TOPIC,
            PatternType.LITERAL,
            [topics.AUDIT, topics.DEADLETTER, topics.TRUST_SCORES, topics.trust_snapshots_topic()],
            read,
        ),
        # Feed lag from the broker's side (`enlace ops exporter`): end offsets of every feed
        # and the partner groups' committed offsets. Describe only: never a feed's records.
        *_grant(who, ResourceType.TOPIC, pre, [topics.FEED_PREFIX], describe),
        *_grant(who, ResourceType.GROUP, pre, [topics.CONSUMER_GROUP_PREFIX], describe),
    ]


def acl_plan(
    agencies: Iterable[str], router_prefix: str = DEFAULT_ROUTER_PREFIX
) -> list[AclBinding]:
    """Every ACL of the exchange, sorted and without duplicates."""
    plan: set[AclBinding] = set()
    for agency in agencies:
        plan.update(agency_bindings(agency))
    plan.update(router_bindings(router_prefix))
    plan.update(operator_bindings())
    return sorted(plan)


def allowed(
    plan: Iterable[AclBinding],
    principal: str,
    resource_type: ResourceType,
    name: str,
    operation: Operation,
) -> bool:
    """What the broker would answer for this plan (Read/Write imply Describe, as in Kafka)."""
    implied = {operation}
    if operation is Operation.DESCRIBE:
        implied |= {Operation.READ, Operation.WRITE}
    return any(
        b.principal == principal
        and b.permission is Permission.ALLOW
        and b.operation in implied
        and b.matches(resource_type, name)
        for b in plan
    )


# -- AclCommand ---------------------------------------------------------------------------
AclAction = Literal["add", "remove"]


def acl_command_args(bindings: Iterable[AclBinding], action: AclAction = "add") -> list[list[str]]:
    """AclCommand argument lists (without connection flags) that apply exactly ``bindings``.

    One AclCommand launch grants every listed operation on every listed resource, so
    resources are grouped by (principal, permission, pattern type, operation set): the
    cross product of one launch is then exactly the bindings of that group.
    """
    ops_of: dict[tuple[str, Permission, ResourceType, PatternType, str], set[Operation]] = (
        defaultdict(set)
    )
    for b in bindings:
        key = (b.principal, b.permission, b.resource_type, b.pattern_type, b.resource_name)
        ops_of[key].add(b.operation)
    groups: dict[
        tuple[str, Permission, PatternType, tuple[Operation, ...]],
        list[tuple[ResourceType, str]],
    ] = defaultdict(list)
    for (principal, permission, rtype, pattern, name), op_set in ops_of.items():
        groups[(principal, permission, pattern, tuple(sorted(op_set)))].append((rtype, name))
    commands: list[list[str]] = []
    for (principal, permission, pattern, ops), resources in sorted(groups.items()):
        principal_flag = (
            "--allow-principal" if permission is Permission.ALLOW else "--deny-principal"
        )
        args = [f"--{action}", principal_flag, principal]
        args += ["--resource-pattern-type", pattern.value.lower()]
        for op in ops:
            args += ["--operation", op.value]
        for rtype, name in sorted(resources):
            args += [_RESOURCE_FLAG[rtype], name]
        if action == "remove":
            args.append("--force")  # no interactive confirmation
        commands.append(args)
    return commands


_RESOURCE_LINE = re.compile(
    r"resourceType=(?P<type>\w+), name=(?P<name>.*?), patternType=(?P<pattern>\w+)\)"
)
_ENTRY_LINE = re.compile(
    r"\(principal=(?P<principal>[^,]+), host=(?P<host>[^,]+), "
    r"operation=(?P<op>\w+), permissionType=(?P<perm>\w+)\)"
)


def parse_acl_list(text: str) -> set[AclBinding]:
    """Bindings in ``AclCommand --list`` output. Entries of types, operations or hosts this
    plan never uses are skipped (they are not ours to manage)."""
    found: set[AclBinding] = set()
    resource: tuple[ResourceType, str, PatternType] | None = None
    for line in text.splitlines():
        if line.startswith("Current ACLs for resource"):
            match = _RESOURCE_LINE.search(line)
            resource = None
            if (
                match
                and match["type"] in ResourceType.__members__
                and match["pattern"] in PatternType.__members__
            ):
                resource = (
                    ResourceType(match["type"]),
                    match["name"],
                    PatternType(match["pattern"]),
                )
            continue
        entry = _ENTRY_LINE.search(line)
        if entry is None or resource is None or entry["host"] != "*":
            continue
        if entry["op"] not in Operation.__members__ or entry["perm"] not in Permission.__members__:
            continue
        rtype, name, pattern = resource
        found.add(
            AclBinding(
                entry["principal"], rtype, pattern, name, Operation(entry["op"]),
                Permission(entry["perm"]),
            )
        )  # fmt: skip
    return found


_SCRAM_USER_LINE = re.compile(
    r"^SCRAM credential configs for user-principal '(?P<user>[^']+)' are (?P<mechs>.*)$"
)


def parse_scram_users(text: str, mechanism: str = SCRAM_MECHANISM) -> set[str]:
    """Users with a ``mechanism`` credential in ``ConfigCommand --describe --entity-type
    users`` output."""
    users: set[str] = set()
    for line in text.splitlines():
        match = _SCRAM_USER_LINE.match(line.strip())
        if match and f"{mechanism}=" in match["mechs"]:
            users.add(match["user"])
    return users


@dataclass(frozen=True)
class AclDiff:
    """What provisioning must change: bindings to add, and managed bindings not in the plan."""

    missing: tuple[AclBinding, ...]
    extra: tuple[AclBinding, ...]


def acl_diff(plan: Sequence[AclBinding], existing: Iterable[AclBinding]) -> AclDiff:
    current = set(existing)
    wanted = set(plan)
    return AclDiff(
        missing=tuple(sorted(wanted - current)),
        extra=tuple(sorted(b for b in current - wanted if is_managed_principal(b.principal))),
    )
