"""Turn what an agency's systems hand us into a valid bulletin of that agency (pure).

Agencies' systems often do not mint ids or timestamps; ``prepare`` fills ``bulletin_id``,
``issued_at``, ``origin`` and ``origin_country`` when absent, then validates. A bulletin that
names another agency as its origin is refused: a publisher signs only its own agency's words.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from enlace.core.errors import ValidationError
from enlace.core.registry import Agency
from producers.inputs import Item, Problem
from schemas.models import ThreatBulletin, validate_bulletin

# Fixed namespace for ids derived from input content (uuid5): the same input gives the same
# ids on every re-send, so the router's replay protection drops the copies.
ID_NAMESPACE = uuid.UUID("4d3f0a52-6a8e-5c39-9b7e-2f1e0c6d8a11")

ORIGIN_FIELD = "origin"


def derive_id(agency: str, content_digest: str, position: int) -> str:
    """A stable bulletin id for the item at ``position`` of an input with this digest."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{agency}/{content_digest}/{position}"))


def _origin_refusal(agency: str, claimed: object) -> ValidationError:
    rule = f"must be the publisher's agency {agency!r} (got {claimed!r})"
    return ValidationError(f"bulletin is invalid: origin: {rule}", [(ORIGIN_FIELD, rule)])


def prepare(
    obj: ThreatBulletin | Mapping[str, Any] | Any,
    agency: Agency,
    now: datetime,
    *,
    bulletin_id: str | None = None,
) -> ThreatBulletin:
    """A valid bulletin of ``agency`` from ``obj`` (a model or a JSON-like mapping).

    Absent (or null) ``bulletin_id`` becomes ``bulletin_id`` if given, else a fresh uuid4;
    absent ``issued_at`` becomes ``now``; absent ``origin``/``origin_country`` become the
    agency's. Raises :class:`~enlace.core.errors.ValidationError` with ``(field, rule)`` problems.
    """
    if isinstance(obj, ThreatBulletin):
        if obj.origin != agency.id:
            raise _origin_refusal(agency.id, obj.origin)
        return obj
    if not isinstance(obj, Mapping):
        rule = f"must be a JSON object, got {type(obj).__name__}"
        raise ValidationError(f"bulletin is invalid: {rule}", [("(record)", rule)])
    claimed = obj.get(ORIGIN_FIELD)
    if claimed is not None and claimed != agency.id:
        raise _origin_refusal(agency.id, claimed)
    fields = dict(obj)
    defaults: dict[str, Any] = {
        "bulletin_id": bulletin_id or str(uuid.uuid4()),
        "issued_at": now,
        ORIGIN_FIELD: agency.id,
        "origin_country": agency.country,
    }
    for name, value in defaults.items():
        if fields.get(name) is None:
            fields[name] = value
    return validate_bulletin(fields)


def prepare_items(
    items: Iterable[Item], agency: Agency, now: datetime, *, digest: str | None = None
) -> tuple[list[tuple[Item, ThreatBulletin]], list[Problem]]:
    """Prepare every item; problems name the line, field and rule of each refusal.

    With ``digest`` (the input's sha256), absent ids are derived from it and the item's
    position, so re-sending the same input yields the same ids. A bulletin id that appears
    twice in one input is refused the second time.
    """
    ready: list[tuple[Item, ThreatBulletin]] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for item in items:
        derived = derive_id(agency.id, digest, item.position) if digest is not None else None
        claimed = item.obj.get("bulletin_id") if isinstance(item.obj, Mapping) else None
        try:
            bulletin = prepare(item.obj, agency, now, bulletin_id=derived)
        except ValidationError as exc:
            shown = claimed if isinstance(claimed, str) else None
            problems.extend(Problem(item.line, field, rule, shown) for field, rule in exc.problems)
            continue
        first = seen.get(bulletin.bulletin_id)
        if first is not None:
            problems.append(
                Problem(
                    item.line,
                    "bulletin_id",
                    f"appears twice in this input (first on line {first})",
                    bulletin.bulletin_id,
                )
            )
            continue
        seen[bulletin.bulletin_id] = item.line
        ready.append((item, bulletin))
    return ready, problems
