"""Quota provisioning as a diff: what ConfigCommand prints, what must change, what is left."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from deploy.acl_plan import is_managed_principal, user
from deploy.quota_plan import clear_quota_args, parse_user_quotas, quota_diff, set_quota_args
from enlace.core.registry import Quotas, Registry

# What Kafka 4.4's ConfigCommand printed against the local secure broker.
DESCRIBE = (
    "Quota configs for user-principal 'cr-msp' are consumer_byte_rate=1048576.0, "
    "request_percentage=50.0, producer_byte_rate=262144.0\n"
    """\
SCRAM credential configs for user-principal 'cr-msp' are SCRAM-SHA-512=iterations=4096
Quota configs for user-principal 'gt-gone' are producer_byte_rate=100000.0
Quota configs for user-principal 'someone-else' are producer_byte_rate=5.0
SCRAM credential configs for user-principal 'admin' are SCRAM-SHA-512=iterations=4096
"""
)


def managed(name: str) -> bool:
    return is_managed_principal(user(name))


def test_parse_reads_quota_lines_only() -> None:
    assert parse_user_quotas(DESCRIBE) == {
        "cr-msp": {
            "consumer_byte_rate": 1048576.0,
            "request_percentage": 50.0,
            "producer_byte_rate": 262144.0,
        },
        "gt-gone": {"producer_byte_rate": 100000.0},
        "someone-else": {"producer_byte_rate": 5.0},
    }


def test_diff_sets_what_differs_and_clears_departed_managed_users_only() -> None:
    wanted = Quotas(producer_byte_rate=262144, consumer_byte_rate=1048576, request_percentage=50)
    diff = quota_diff(
        {"cr-msp": wanted, "pa-senafront": Quotas()}, parse_user_quotas(DESCRIBE), managed=managed
    )
    assert diff.to_set == {"pa-senafront": Quotas().kafka_configs()}
    assert diff.to_clear == {"gt-gone": ("producer_byte_rate",)}  # someone-else is not ours


@given(
    st.dictionaries(
        st.sampled_from(["cr-msp", "pa-senafront", "mx-sedena"]),
        st.builds(
            Quotas,
            producer_byte_rate=st.integers(1024, 10**9),
            consumer_byte_rate=st.integers(1024, 10**9),
            request_percentage=st.integers(1, 10_000),
        ),
    )
)
def test_applying_the_diff_reaches_the_plan_and_a_second_diff_is_empty(
    desired: dict[str, Quotas],
) -> None:
    existing = parse_user_quotas(DESCRIBE)
    diff = quota_diff(desired, existing, managed=managed)
    after = {u: c for u, c in existing.items() if u not in diff.to_clear}
    after |= diff.to_set
    assert quota_diff(desired, after, managed=managed).to_set == {}
    assert quota_diff(desired, after, managed=managed).to_clear == {}
    assert after.get("someone-else") == {"producer_byte_rate": 5.0}


def test_command_arguments_and_registry_overrides() -> None:
    args = set_quota_args("cr-msp", Quotas().kafka_configs())
    assert args[:3] == [
        "--alter",
        "--add-config",
        "consumer_byte_rate=8388608,producer_byte_rate=1048576,request_percentage=50",
    ]
    assert clear_quota_args("x", ("producer_byte_rate",))[2] == "producer_byte_rate"
    registry = Registry.model_validate(
        {
            "quotas": {"producer_byte_rate": 2048},
            "agencies": [
                {"id": "cr-msp", "country": "CR", "name": "A"},
                {
                    "id": "pa-senafront",
                    "country": "PA",
                    "name": "B",
                    "quotas": {"producer_byte_rate": 4096},
                },
            ],
        }
    )
    assert registry.quotas_of("cr-msp").producer_byte_rate == 2048
    assert registry.all_quotas["pa-senafront"].producer_byte_rate == 4096
