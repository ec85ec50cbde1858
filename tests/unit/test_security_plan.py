"""The ACL plan (pure): the topic table of docs/design.md, least privilege, AclCommand lines."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.settings import RouterSettings
from consumers.settings import ConsumerSettings
from deploy.acl_plan import (
    CONSUMER_GROUP_PREFIX,
    DEFAULT_ROUTER_PREFIX,
    OPERATOR_USER,
    PREFIX_DELIMITERS,
    ROUTER_USER,
    AclBinding,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    acl_command_args,
    acl_diff,
    acl_plan,
    allowed,
    check_prefix,
    parse_acl_list,
    parse_scram_users,
    principals,
    user,
)
from deploy.provisioning import AdminConnection, password_env_var, resolve_passwords
from enlace.core import topics
from enlace.core.registry import AGENCY_ID_PATTERN, Registry
from enlace.core.settings import DEFAULT_AGENCIES
from enlace.core.topics import consumer_group, router_transactional_id

REGISTRY_IDS = Registry.load(DEFAULT_AGENCIES).ids
# Ids that share a prefix: a prefixed per-agency ACL would leak cr-msp2's feed to cr-msp.
PREFIX_SHARING = ("cr-msp", "cr-msp2", "cr-ms", "pa-senafront")
ROUTER = user(ROUTER_USER)
OPERATOR = user(OPERATOR_USER)
T = ResourceType.TOPIC

agency_ids = st.from_regex(AGENCY_ID_PATTERN, fullmatch=True)
agency_sets = st.lists(agency_ids, min_size=1, max_size=6, unique=True)


def readers(plan: list[AclBinding], topic: str, everyone: Iterable[str]) -> set[str]:
    return {p for p in everyone if allowed(plan, p, T, topic, Operation.READ)}


def writers(plan: list[AclBinding], topic: str, everyone: Iterable[str]) -> set[str]:
    return {p for p in everyone if allowed(plan, p, T, topic, Operation.WRITE)}


@pytest.mark.parametrize("agencies", [REGISTRY_IDS, PREFIX_SHARING])
def test_every_topic_has_exactly_the_readers_and_writers_of_the_design_table(
    agencies: tuple[str, ...],
) -> None:
    plan = acl_plan(agencies)
    everyone = [user(name) for name in principals(agencies)]
    specs = exchange = topics.exchange_topics(agencies, partitions=3, replication=1, min_insync=1)
    assert len(specs) == 3 * len(agencies) + 5
    expected: dict[str, tuple[set[str], set[str]]] = {}
    for agency in agencies:
        expected[topics.outbound(agency)] = ({user(agency)}, {ROUTER})
        expected[topics.receipts(agency)] = ({user(agency)}, {ROUTER})
        expected[topics.feed(agency)] = ({ROUTER}, {user(agency)})
    expected[topics.AUDIT] = ({ROUTER}, {ROUTER, OPERATOR})
    expected[topics.DEADLETTER] = ({ROUTER}, {OPERATOR})
    expected[topics.TRUST_SCORES] = ({ROUTER}, {ROUTER, OPERATOR})
    expected[topics.ROUTER_SEEN] = ({ROUTER}, {ROUTER})
    # Snapshots name released bulletins, as the audit does: the operator may read them.
    expected[topics.trust_snapshots_topic()] = ({ROUTER}, {ROUTER, OPERATOR})
    for spec in exchange:
        want_writers, want_readers = expected[spec.name]
        assert writers(plan, spec.name, everyone) == want_writers, spec.name
        assert readers(plan, spec.name, everyone) == want_readers, spec.name


@given(agency_sets)
def test_no_agency_reaches_another_agencys_topics(agencies: list[str]) -> None:
    plan = acl_plan(agencies)
    for me, other in itertools.permutations(agencies, 2):
        for topic in (topics.outbound(other), topics.feed(other), topics.receipts(other)):
            for op in Operation:
                assert not allowed(plan, user(me), T, topic, op), (me, topic, op)
        assert not allowed(
            plan, user(me), ResourceType.GROUP, consumer_group(other), Operation.READ
        )
    for me in agencies:
        # Its own outbound is write-only: no agency reads what any agency published.
        assert not allowed(plan, user(me), T, topics.outbound(me), Operation.READ)
        assert not allowed(plan, user(me), T, topics.feed(me), Operation.WRITE)
        own = (topics.AUDIT, topics.DEADLETTER, topics.TRUST_SCORES, topics.ROUTER_SEEN,
               topics.trust_snapshots_topic())  # fmt: skip
        for topic in own:
            assert not allowed(plan, user(me), T, topic, Operation.DESCRIBE)
        assert not any(
            b.resource_type is ResourceType.TRANSACTIONAL_ID
            for b in plan
            if b.principal == user(me)
        )


@given(agency_sets)
def test_per_agency_bindings_are_literal_and_prefixes_end_in_a_delimiter(
    agencies: list[str],
) -> None:
    plan = acl_plan(agencies)
    for binding in plan:
        if binding.principal not in (ROUTER, OPERATOR):
            assert binding.pattern_type is PatternType.LITERAL, binding
        if binding.pattern_type is PatternType.PREFIXED:
            assert binding.resource_name.endswith(PREFIX_DELIMITERS), binding
        assert binding.permission is Permission.ALLOW


def test_router_grants_cover_its_group_transactional_ids_and_new_agencies() -> None:
    settings = RouterSettings()
    assert settings.router_prefix == DEFAULT_ROUTER_PREFIX
    plan = acl_plan(REGISTRY_IDS, settings.router_prefix)
    assert allowed(plan, ROUTER, ResourceType.GROUP, settings.group_id, Operation.READ)
    txn_id = router_transactional_id(topics.outbound("cr-msp"), 2, settings.router_prefix)
    assert allowed(plan, ROUTER, ResourceType.TRANSACTIONAL_ID, txn_id, Operation.WRITE)
    assert not allowed(plan, ROUTER, ResourceType.TRANSACTIONAL_ID, "rogue.0", Operation.WRITE)
    # An agency that joins later is routed before anyone re-provisions the router.
    assert allowed(plan, ROUTER, T, topics.outbound("zz-newcomer"), Operation.READ)
    assert allowed(plan, ROUTER, T, topics.feed("zz-newcomer"), Operation.WRITE)
    assert not allowed(plan, ROUTER, T, topics.feed("zz-newcomer"), Operation.READ)


def test_consumer_group_matches_the_consumer_services_default() -> None:
    settings = ConsumerSettings(agency="cr-msp")
    assert settings.consumer_group() == consumer_group("cr-msp")
    assert consumer_group("cr-msp").startswith(CONSUMER_GROUP_PREFIX)


@pytest.mark.parametrize("prefix", ["", "enlace.router", "enlace"])
def test_prefix_without_delimiter_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="must be non-empty and end in"):
        check_prefix(prefix)
    with pytest.raises(ValueError, match="must be non-empty and end in"):
        acl_plan(["cr-msp"], prefix)


def expand(args: list[str]) -> set[AclBinding]:
    """The bindings one AclCommand launch creates: principal x operations x resources."""
    flag_type = {
        "--topic": ResourceType.TOPIC,
        "--group": ResourceType.GROUP,
        "--transactional-id": ResourceType.TRANSACTIONAL_ID,
    }
    pairs = list(zip(args[1::2], args[2::2], strict=False))
    principal = next(v for k, v in pairs if k == "--allow-principal")
    pattern = PatternType(next(v for k, v in pairs if k == "--resource-pattern-type").upper())
    ops = [Operation(v) for k, v in pairs if k == "--operation"]
    resources = [(flag_type[k], v) for k, v in pairs if k in flag_type]
    return {
        AclBinding(principal, rtype, pattern, name, op)
        for (rtype, name), op in itertools.product(resources, ops)
    }


@given(agency_sets)
def test_acl_commands_grant_exactly_the_plan_in_few_launches(agencies: list[str]) -> None:
    plan = acl_plan(agencies)
    commands = acl_command_args(plan)
    granted: set[AclBinding] = set()
    for args in commands:
        assert args[0] == "--add"
        granted |= expand(args)
    assert granted == set(plan)
    # Two launches per agency; router 4; operator 2 (its reads, and Describe on feeds + groups).
    assert len(commands) == 2 * len(agencies) + 6


def test_remove_commands_do_not_prompt() -> None:
    commands = acl_command_args(acl_plan(["cr-msp"]), "remove")
    assert all(args[0] == "--remove" and args[-1] == "--force" for args in commands)


def _resource(rtype: str, name: str, pattern: str) -> str:
    """A header line of ``AclCommand --list`` (Kafka 4.4), verbatim but for the values."""
    return (
        "Current ACLs for resource `ResourcePattern("
        f"resourceType={rtype}, name={name}, patternType={pattern})`:"
    )


ACL_LIST_OUTPUT = "\n".join(
    [
        _resource("TOPIC", "enlace.feed.cr-msp", "LITERAL"),
        "\t(principal=User:cr-msp, host=*, operation=READ, permissionType=ALLOW)",
        "\t(principal=User:cr-msp, host=*, operation=DESCRIBE, permissionType=ALLOW)",
        "\t(principal=User:spy, host=10.0.0.9, operation=READ, permissionType=ALLOW)",
        "",
        _resource("TRANSACTIONAL_ID", "enlace.router.", "PREFIXED"),
        "\t(principal=User:enlace-router, host=*, operation=WRITE, permissionType=ALLOW)",
        "",
        _resource("CLUSTER", "kafka-cluster", "LITERAL"),
        "\t(principal=User:admin, host=*, operation=ALTER, permissionType=ALLOW)",
        "",
        _resource("TOPIC", "enlace.audit", "LITERAL"),
        "\t(principal=User:admin, host=*, operation=READ, permissionType=ALLOW)",
        "\t(principal=User:xx-gone, host=*, operation=READ, permissionType=DENY)",
    ]
)


def test_acl_list_output_is_parsed_and_unmanaged_entries_are_left_alone() -> None:
    found = parse_acl_list(ACL_LIST_OUTPUT)
    feed = topics.feed("cr-msp")
    assert found == {
        AclBinding("User:cr-msp", T, PatternType.LITERAL, feed, Operation.READ),
        AclBinding("User:cr-msp", T, PatternType.LITERAL, feed, Operation.DESCRIBE),
        AclBinding(
            ROUTER, ResourceType.TRANSACTIONAL_ID, PatternType.PREFIXED, "enlace.router.",
            Operation.WRITE,
        ),
        AclBinding("User:admin", T, PatternType.LITERAL, topics.AUDIT, Operation.READ),
        AclBinding(
            "User:xx-gone", T, PatternType.LITERAL, topics.AUDIT, Operation.READ,
            Permission.DENY,
        ),
    }  # fmt: skip
    diff = acl_diff(acl_plan(["cr-msp"]), found)
    # Admin's grant is not ours; the stale DENY of a departed agency is.
    assert [b.principal for b in diff.extra] == ["User:xx-gone"]
    assert len(diff.missing) == len(acl_plan(["cr-msp"])) - 3


def test_scram_users_are_parsed_per_mechanism() -> None:
    text = (
        "SCRAM credential configs for user-principal 'admin' are SCRAM-SHA-512=iterations=4096\n"
        "SCRAM credential configs for user-principal 'cr-msp' are SCRAM-SHA-256=iterations=8192\n"
        "SCRAM credential configs for user-principal 'pa-senafront' are "
        "SCRAM-SHA-256=iterations=4096, SCRAM-SHA-512=iterations=4096\n"
    )
    assert parse_scram_users(text) == {"admin", "pa-senafront"}


def test_passwords_come_from_env_then_file_then_are_generated() -> None:
    resolved = resolve_passwords(
        ["cr-msp", "pa-senafront", ROUTER_USER],
        stored={"pa-senafront": "from-file", ROUTER_USER: "stale"},
        env={password_env_var(ROUTER_USER): "from-env"},
    )
    assert password_env_var("cr-msp") == "ENLACE_SCRAM_PASSWORD_CR_MSP"
    assert resolved.passwords["pa-senafront"] == "from-file"
    assert resolved.passwords[ROUTER_USER] == "from-env"
    assert len(resolved.passwords["cr-msp"]) >= 32
    assert resolved.unsynced == {"cr-msp", ROUTER_USER}
    # The environment owns the router's password: no stale copy stays on disk.
    assert resolved.stored == {"pa-senafront": "from-file", "cr-msp": resolved.passwords["cr-msp"]}
    assert "from-file" not in repr(resolved)


def test_admin_properties_escape_the_jaas_password_and_hide_it_from_repr() -> None:
    conn = AdminConnection("127.0.0.1:9092", "admin", 'p"w\\x')
    props = conn.command_config()
    assert 'password="p\\"w\\\\x";' in props
    assert "security.protocol=SASL_PLAINTEXT" in props
    assert 'p"w' not in repr(conn)
