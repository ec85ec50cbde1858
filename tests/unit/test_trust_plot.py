"""``enlace trust plot``: the command draws a real picture of the expected size from a history
file, refuses what it cannot do, and says how to install matplotlib when it is missing."""

from __future__ import annotations

import struct
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from matplotlib.image import imread
from typer.testing import CliRunner

from broker import cli as broker_cli
from broker.policy import Policy
from broker.trust_plot import HEIGHT_PX, WIDTH_PX, image_format, render
from broker.trust_series import series_from_records
from enlace.core.errors import ConfigError, EnvironmentProblem

ROOT = Path(__file__).resolve().parents[2]
EVENTS = Path(__file__).with_name("data") / "trust_events.jsonl"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    root = typer.Typer()
    broker_cli.register(root)
    return root


def invoke(app: typer.Typer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_writes_a_png_of_the_expected_size(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "pair.png"
    code, output = invoke(
        app, "trust", "plot", "us-jiatfs", "do-dncd", "--events", str(EVENTS),
        "--since", "2026-03-01T00:00:00Z", "--until", "2026-05-01T00:00:00Z", "--out", str(out),
    )  # fmt: skip
    assert code == 0, output
    assert png_size(out) == (WIDTH_PX, HEIGHT_PX)
    pixels = imread(out)
    assert pixels.shape[:2] == (HEIGHT_PX, WIDTH_PX)
    assert pixels.std() > 0.05  # something is drawn, not a blank canvas
    assert "score 0.700 -> 0.462 (RESTRICTED)" in output
    assert f"wrote {out}" in output


def test_plot_writes_svg_for_an_svg_suffix(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "pair.svg"
    code, output = invoke(
        app, "trust", "plot", "us-jiatfs", "co-ponal", "--events", str(EVENTS),
        "--until", "2026-05-01T00:00:00Z", "--days", "30", "--out", str(out),
    )  # fmt: skip
    assert code == 0, output
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<?xml")
    assert "<svg" in text


def test_plot_takes_events_or_live_not_both_nor_neither(app: typer.Typer, tmp_path: Path) -> None:
    out = str(tmp_path / "p.png")
    code, output = invoke(app, "trust", "plot", "us-jiatfs", "do-dncd", "--out", out)
    assert code != 0
    assert "--events FILE or --live" in output
    code, _ = invoke(
        app, "trust", "plot", "us-jiatfs", "do-dncd", "--events", str(EVENTS), "--live",
        "--out", out,
    )  # fmt: skip
    assert code != 0


def test_a_picture_format_other_than_png_or_svg_is_refused(tmp_path: Path) -> None:
    assert image_format(tmp_path / "a.PNG") == "png"
    assert image_format(tmp_path / "a.svg") == "svg"
    with pytest.raises(ConfigError, match=r"\.png or \.svg"):
        image_format(tmp_path / "a.jpg")


def test_without_matplotlib_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    policy = Policy.load(ROOT / "deploy" / "policy.yaml")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    series = series_from_records(
        [], policy, "us-jiatfs", "do-dncd", since=start, until=start + timedelta(1)
    )
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(EnvironmentProblem, match=r"pip install 'enlace\[plot\]'"):
        render(series, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
