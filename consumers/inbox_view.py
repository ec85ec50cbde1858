"""Rendering the inbox (what an agency received) with rich; ``--since`` parsing."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from consumers.gaps import FeedGap
from consumers.store import InboxRow, QuarantineRow, StoredBulletin
from enlace.core.errors import ConfigError, SignatureError
from schemas.key_directory import KeyDirectory

_AGO = re.compile(r"^(?P<n>\d+)(?P<unit>[smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SEVERITY_STYLE = {"CRITICAL": "bold red", "HIGH": "red", "MEDIUM": "yellow", "LOW": "green"}
_STATUS_STYLE = {"withdrawn": "bold red", "superseded": "yellow"}
_TLP_STYLE = {
    "RED": "bold white on red",
    "AMBER_STRICT": "black on dark_orange",
    "AMBER": "black on orange1",
    "GREEN": "black on green",
    "CLEAR": "black on white",
}


def parse_since(text: str, now: datetime) -> datetime:
    """``30m``, ``24h``, ``7d``, ``2w`` ago, or an ISO date/time (UTC if no zone given)."""
    text = text.strip()
    match = _AGO.fullmatch(text)
    if match:
        return now - timedelta(**{_UNITS[match["unit"]]: int(match["n"])})
    try:
        parsed = datetime.fromisoformat(text)  # 3.11 reads a trailing Z
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: use a duration like 24h or 7d, or an ISO date like 2026-03-14"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _short_time(iso_text: str) -> str:
    return iso_text[:16].replace("T", " ")


def inbox_table(rows: Sequence[InboxRow], *, title: str) -> Table:
    table = Table(title=title, show_lines=False, header_style="bold")
    table.add_column("received (UTC)", no_wrap=True)
    table.add_column("id", no_wrap=True)
    table.add_column("origin", no_wrap=True)
    table.add_column("release", no_wrap=True)
    table.add_column("category")
    table.add_column("severity")
    table.add_column("TLP", no_wrap=True)
    table.add_column("classification")
    table.add_column("title")
    table.add_column("receipt", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for row in rows:
        table.add_row(
            _short_time(row.received_at),
            row.bulletin_id[:8],
            row.origin,
            row.release + (" ↑" if row.upgraded_at else ""),
            row.category,
            Text(row.severity, style=_SEVERITY_STYLE.get(row.severity, "")),
            Text(f"TLP:{row.tlp.replace('_', '+')}", style=_TLP_STYLE.get(row.tlp, "")),
            row.classification,
            Text(row.title, style="strike dim" if row.status == "withdrawn" else ""),
            row.receipt_state,
            Text(
                row.status.upper() if row.status else "-", style=_STATUS_STYLE.get(row.status, "")
            ),
        )
    return table


def reverify(stored: StoredBulletin, directory: KeyDirectory | None) -> str:
    """The stored bytes checked again against the current key directory."""
    if directory is None:
        return "not re-checked (no key directory)"
    row = stored.row
    try:
        directory.verify(
            row.origin, row.key_id, stored.value, stored.signature, at=stored.bulletin.issued_at
        )
    except SignatureError as exc:
        return f"FAILS now: {exc.reason} ({exc})"
    return "still valid against the current key directory"


def bulletin_panel(stored: StoredBulletin, *, recheck: str) -> Panel:
    row, b = stored.row, stored.bulletin
    admiralty = f"{b.source_reliability.value}{b.info_credibility.value[1:]}"
    receipt = " ".join(
        part
        for part in (row.receipt_state, stored.receipt_event_id, stored.receipt_sent_at)
        if part
    )
    meta = Table.grid(padding=(0, 2))
    meta.add_column(style="bold")
    meta.add_column()
    fields: list[tuple[str, str]] = [
        ("bulletin", row.bulletin_id),
        ("origin", f"{b.origin} ({b.origin_country})"),
        ("release", row.release + (f" (upgraded {row.upgraded_at})" if row.upgraded_at else "")),
        ("category / severity", f"{b.category.value} / {b.severity.value}"),
        (
            "classification",
            f"{b.classification.value} (tearline {b.tearline_classification.value})",
        ),
        ("TLP / caveats", f"{b.tlp.value} / {', '.join(c.value for c in b.caveats) or '-'}"),
        ("releasable to", ", ".join(b.releasable_to) or "(as trust allows)"),
        (
            "source",
            f"{b.source_type.value}, Admiralty {admiralty}",
        ),
        (
            "issued / valid until",
            f"{row.issued_at} / {b.valid_until.isoformat() if b.valid_until else '-'}",
        ),
        ("received", row.received_at),
        ("verification", f"{'verified' if row.verified else 'NOT verified'} with key {row.key_id}"),
        ("re-check", recheck),
        (
            "receipt",
            receipt,
        ),
        ("feed record", stored.source),
        *lifecycle_fields(stored),
    ]
    for name, value in fields:
        meta.add_row(name, value)
    body = json.dumps(b.model_dump(mode="json"), indent=2, ensure_ascii=False)
    heading = [Text(b.title, style="bold")]
    if row.recall_id is not None:
        heading.insert(0, Text(f"WITHDRAWN by {b.origin}: {row.recall_reason}", style="bold red"))
    return Panel(
        Group(*heading, Text(b.summary), meta, Text(body, style="dim")),
        title=f"{b.origin} · {row.release}" + (" · WITHDRAWN" if row.recall_id else ""),
    )


def lifecycle_fields(stored: StoredBulletin) -> list[tuple[str, str]]:
    """The recall and supersede lines of ``inbox show`` (none for a plain bulletin)."""
    row, links = stored.row, stored.links
    out: list[tuple[str, str]] = []
    if row.recall_id is not None:
        out.append(("withdrawn", f"{row.recalled_at} by {row.origin} (recall {row.recall_id})"))
        out.append(("recall reason", row.recall_reason or "-"))
    if links.superseded_by:
        out.append(("superseded by", ", ".join(links.superseded_by)))
    if links.supersedes:
        out.append(("supersedes", ", ".join(links.supersedes)))
    return out


def quarantine_table(rows: Sequence[QuarantineRow]) -> Table:
    table = Table(title="quarantine", header_style="bold")
    for column in ("at (UTC)", "record", "reason", "claimed origin", "bulletin", "detail"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            _short_time(row.quarantined_at),
            row.source,
            row.reason,
            row.origin or "-",
            (row.bulletin_id or "-")[:8],
            row.detail[:120],
        )
    return table


def gaps_text(gaps: Sequence[FeedGap], *, total: int, missed: int) -> Text | None:
    """``2 gaps: enlace.feed.X p0 offsets 0-120 expired unread (detected ...)``, one line per
    gap shown; ``None`` when the store holds none. ``total``/``missed`` cover every gap, also
    those beyond ``gaps``."""
    if total == 0:
        return None
    noun = "gap" if total == 1 else "gaps"
    text = Text(
        f"{total} {noun}: {missed} feed offsets expired unread (at most that many releases "
        "missed; ask their originators to re-send)\n",
        style="bold red",
    )
    for gap in gaps:
        detected = gap.detected_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        text.append(f"  {gap.describe()} (detected {detected})\n", style="red")
    if total > len(gaps):
        text.append(f"  ... and {total - len(gaps)} more: enlace inbox gaps\n", style="red")
    return text
