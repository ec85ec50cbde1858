"""The benchmark's pure helpers: percentiles, summaries, pacing, plans, renaming, the report.

Benchmarks are not timed tests: nothing here asserts a timing.
"""

from __future__ import annotations

import cProfile
import pstats

import pytest
from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from bench.cpu import CpuUse
from bench.exchange import rename, rename_in_text
from bench.micro import top_functions
from bench.plan import Plan
from bench.report import BenchResult, MicroCost, Row, markdown_table, render
from bench.scrape import metrics_url, parse_counters
from bench.stats import due, latencies, percentile, rate, summarize_seconds
from broker.metrics import RouterMetrics
from enlace.core.registry import check_agency_id

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0], 50, 1.5),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 25, 1.75),  # numpy.percentile(..., 25) == 1.75
        (list(map(float, range(1, 101))), 99, 99.01),
    ],
)
def test_percentile_matches_linear_interpolation(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_refuses_no_values_and_bad_ranks() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], 101)


@given(st.lists(finite, min_size=1, max_size=50), st.floats(0, 100), st.floats(0, 100))
def test_percentile_is_bounded_and_monotone(values: list[float], q1: float, q2: float) -> None:
    low, high = sorted((q1, q2))
    assert min(values) <= percentile(values, low) <= percentile(values, high) <= max(values)


def test_latency_summary_in_milliseconds_and_none_when_nothing_arrived() -> None:
    assert summarize_seconds([]) is None
    summary = summarize_seconds([0.001, 0.002, 0.003, 0.100])
    assert summary is not None
    assert summary.count == 4
    assert summary.p50_ms == pytest.approx(2.5)
    assert summary.max_ms == pytest.approx(100.0)
    assert summary.p99_ms == pytest.approx(97.09)
    assert summary.as_dict()["p50_ms"] == 2.5


def test_latencies_pair_only_keys_seen_on_both_sides() -> None:
    sent = {b"a": 1.0, b"b": 2.0, b"lost": 3.0}
    received = {b"a": 1.5, b"b": 2.25, b"stranger": 9.0}
    assert sorted(latencies(sent, received)) == [0.25, 0.5]


def test_rate_never_divides_by_zero() -> None:
    assert rate(100, 2.0) == 50.0
    assert rate(100, 0.0) == 0.0


def test_open_loop_pacing_owes_by_the_clock_not_by_progress() -> None:
    assert due(100.0, 0.0, 0, 1000) == 1  # the first item goes at once
    assert due(100.0, 0.5, 1, 1000) == 50
    assert due(100.0, 0.5, 51, 1000) == 0
    assert due(100.0, 100.0, 10, 1000) == 990  # never more than the total
    assert due(100.0, 0.5, 60, 1000) == 0  # never negative


def test_plans_and_their_overrides() -> None:
    quick, standard = Plan.quick(), Plan.standard()
    assert quick.bulletins < standard.bulletins
    assert quick.seconds < standard.seconds
    plan = standard.with_overrides(bulletins=10, rate=20.0, profile_router=True)
    assert (plan.bulletins, plan.rate, plan.profile_router) == (10, 20.0, True)
    assert plan.fixed_count == 20 * plan.seconds
    assert plan.raw_count == 10 * plan.raw_factor
    assert plan.flat_drain_s(1_000_000, 100) == 10_000
    assert plan.flat_drain_s(10, 100) == plan.drain_s
    with pytest.raises(ValueError, match="bulletins"):
        standard.with_overrides(bulletins=0, rate=None, profile_router=False)
    with pytest.raises(ValueError, match="rate"):
        standard.with_overrides(bulletins=None, rate=-1.0, profile_router=False)


def test_renamed_agency_ids_stay_valid_and_only_whole_ids_change() -> None:
    token = "0a1b2c3d"
    assert check_agency_id(rename("pa-senafront", token)) == "pa-senafrontb0a1b2c3d"
    text = (
        "- {between: [gt-pnc, sv-pnc], level: standard}\n"
        "  gt-pnc:\n    never: [BZ]\n# gt-pncx and xgt-pnc are not ids\n"
    )
    renamed = rename_in_text(text, ("gt-pnc", "sv-pnc"), token)
    assert "[gt-pncb0a1b2c3d, sv-pncb0a1b2c3d]" in renamed
    assert "  gt-pncb0a1b2c3d:\n" in renamed
    assert "never: [BZ]" in renamed
    assert "gt-pncx and xgt-pnc" in renamed


def test_markdown_table_pads_aligns_and_escapes() -> None:
    table = markdown_table(["Name", "n"], [["a|b", "1"], ["long name", "1,000"]], ["left", "right"])
    lines = table.splitlines()
    assert lines[0] == "| Name      |     n |"
    assert lines[1] == "| --------- | ----: |"
    assert lines[2] == "| a\\|b      |     1 |"
    assert lines[3] == "| long name | 1,000 |"
    assert len({len(line) for line in lines}) == 1


def test_markdown_table_refuses_ragged_rows() -> None:
    with pytest.raises(ValueError, match="one entry per column"):
        markdown_table(["a", "b"], [["only one"]])


def test_render_shows_rows_micro_costs_and_dashes_for_missing_values() -> None:
    summary = summarize_seconds([0.010, 0.020])
    result = BenchResult(
        machine={"cores": 2, "python": "3.11.7"},
        config={},
        rows=[
            Row("Raw Kafka", "fixed 50/s", 600, 50.0, "msg/s", summary, "note"),
            Row("Enlace publish only", "flat out", 3000, 2608.4, "bulletin/s"),
        ],
        micro=[MicroCost("encode", mean_us=80.0, median_us=75.0, iterations=10)],
        problems=["something went wrong"],
    )
    text = render(result)
    assert "- cores: 2\n- python: 3.11.7\n" in text
    assert "| Raw Kafka           | fixed 50/s |" in text
    assert "15.0" in text  # p50 of 10 and 20 ms
    assert "2,608 bulletin/s" in text
    assert "13,333" in text  # 1e6 / 75 µs per core
    assert "- something went wrong" in text
    row_line = next(line for line in text.splitlines() if "Enlace publish only" in line)
    assert row_line.count("—") == 2, "no latency measured: both columns show a dash"
    assert result.as_dict()["rows"][1]["latency"] is None


def test_cpu_use_description() -> None:
    use = CpuUse(seconds=2.0, processes={"router": 1.9, "broker": 1.0}, bench_s=0.5,
                 machine_busy=0.97)  # fmt: skip
    text = use.describe(100, "bulletin")
    assert text == (
        "CPU: router 95% (19.00 ms/bulletin), broker 50% (10.00 ms/bulletin), bench 25%, "
        "machine 97% of 2 cores"
    )
    assert use.as_dict()["cpu_s"] == {"router": 1.9, "broker": 1.0}


def _busy(n: int) -> int:
    return sum(i * i for i in range(n))


def test_top_functions_lists_the_heaviest_first() -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20):
        _busy(2000)
    profiler.disable()
    top = top_functions(pstats.Stats(profiler), 3)
    assert 1 <= len(top) <= 3
    own = [entry["tottime_s"] for entry in top]
    assert own == sorted(own, reverse=True)
    assert {"function", "calls", "tottime_s", "cumtime_s", "share_own"} <= set(top[0])
    cumulative = top_functions(pstats.Stats(profiler), 5, cumulative=True)
    assert all("test_bench" not in entry["function"] for entry in cumulative), (
        "the cumulative view keeps only project and aiokafka functions"
    )


def test_router_counters_from_its_metrics_and_their_difference() -> None:
    metrics = RouterMetrics()
    tp = TopicPartition("enlace.outbound.pa-senafront", 0)
    metrics.committed(tp, records=5, outputs=100, seconds=0.2)
    before = parse_counters(generate_latest(metrics.registry).decode())
    metrics.committed(tp, records=3, outputs=60, seconds=0.1)
    metrics.aborted(tp, "fenced")
    delta = parse_counters(generate_latest(metrics.registry).decode()) - before
    assert (delta.committed, delta.aborted, delta.records) == (1.0, 1.0, 3.0)
    assert delta.seconds == pytest.approx(0.1)
    assert delta.describe() == "1 transactions, 3.0 bulletins and 100 ms each, 1 aborted"
    line = '{"event": "router_started", "metrics": "http://127.0.0.1:40123/metrics"}'
    assert metrics_url(f"noise\n{line}\n") == "http://127.0.0.1:40123/metrics"
    assert metrics_url('{"metrics": "http://evil.example/metrics"}') is None
