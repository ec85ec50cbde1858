"""The bulletin lifecycle on the partner side: recalls and supersede links (pure).

A recall withdraws a bulletin: the store keeps it, flagged withdrawn, and every sink
publishes the withdrawal in its own format (STIX ``revoked``, a MISP tag, a JSON event).
Only the bulletin's originator may recall it. The feed record's signature proves who signed
the recall (``consumers.verify``); whether that signer is the bulletin's originator needs
the bulletin, so :func:`screen_recalls` checks it against what the store holds and what the
same poll delivers before it. A recall for a bulletin not held yet is kept and applied when
the bulletin arrives (if the bulletin's origin is the recall's).

Withdrawn is final: a later copy of a withdrawn bulletin (a full copy after its tearline)
changes nothing anywhere, so no sink ever republishes a withdrawn bulletin as live.

New versions: a withdrawn bulletin's STIX objects get one more version, ``revoked: true``,
whose ``modified`` is :func:`revoked_at`: never before the recall, and always after both
versions the bulletin may have had (tearline at ``issued_at``, full copy one millisecond
later), so the revoked version is the latest whatever the clocks say. Computed from the
bulletin alone, the STIX sink and the TAXII index give it the same version.

Supersede: a bulletin whose references name another with relation SUPERSEDES replaces it.
Links are kept as received, either order; the old bulletin reads as superseded only if the
new one has the same originator (an agency replaces only its own bulletins).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from datetime import datetime, timedelta
from typing import Any

from consumers.records import (
    Delivered,
    Item,
    Quarantined,
    Recalled,
    RecallOutcome,
    Release,
    StoreOutcome,
)
from consumers.stix_mapping import stix_id, stix_time
from consumers.verify import RECALL_NOT_ORIGINATOR
from schemas import misp_vocab as mv
from schemas.bulletin import Reference
from schemas.vocab import ReferenceKind

# After the tearline (issued_at) and the full copy (issued_at + 1 ms) versions.
_AFTER_EVERY_COPY = timedelta(milliseconds=2)
WITHDRAWN_TAG = mv.enlace_tag("withdrawn", "true")
WITHDRAWN_COLOUR = "#cc0000"


def superseded_ids(references: Sequence[Reference]) -> tuple[str, ...]:
    """The bulletins ``references`` says this one replaces, once each, in order."""
    ids = (r.bulletin_id for r in references if r.relation is ReferenceKind.SUPERSEDES)
    return tuple(dict.fromkeys(ids))


def recalled_ids(items: Sequence[Item]) -> list[str]:
    """The bulletins recalled in a poll (to look their origins up in the store)."""
    return list(dict.fromkeys(i.bulletin_id for i in items if isinstance(i, Recalled)))


def screen_recalls(items: Sequence[Item], held_origins: Mapping[str, str]) -> list[Item]:
    """``items`` with every recall of a bulletin whose known origin is not the recall's
    turned into a quarantined record (``recall_not_originator``). A bulletin's origin is
    known from ``held_origins`` (the store, before this poll) or from a delivery earlier in
    the poll. A recall of a bulletin unknown so far passes: the store applies it only to a
    bulletin of the same origin, if one arrives."""
    origins = dict(held_origins)
    out: list[Item] = []
    for item in items:
        if isinstance(item, Delivered):
            origins.setdefault(item.bulletin_id, item.origin)
        elif isinstance(item, Recalled):
            owner = origins.get(item.bulletin_id)
            if owner is not None and owner != item.origin:
                out.append(_not_originator(item, owner))
                continue
        out.append(item)
    return out


def _not_originator(item: Recalled, owner: str) -> Quarantined:
    return Quarantined(
        record=item.record,
        reason=RECALL_NOT_ORIGINATOR,
        detail=f"recall signed by {item.origin!r}, bulletin originated by {owner!r}",
        received_at=item.received_at,
        origin=item.origin,
        key_id=item.key_id,
        bulletin_id=item.bulletin_id,
        release="recall",
    )


def plan_poll(
    held: Mapping[str, tuple[Release, str]],
    recalled: Set[tuple[str, str]],
    items: Sequence[Item],
) -> dict[int, StoreOutcome | RecallOutcome]:
    """What storing a poll does, item by item in order (pure), given the bulletins held
    (id -> release, origin) and the recalls recorded ((bulletin id, signer)) before it.
    Deliveries follow the store's upgrade rule, except that a withdrawn bulletin takes no
    later copy; a recall is applied to a held bulletin of its origin, pending otherwise, a
    duplicate if recorded already. Quarantined items have no outcome."""
    now_held = dict(held)
    now_recalled = set(recalled)
    out: dict[int, StoreOutcome | RecallOutcome] = {}
    for index, item in enumerate(items):
        if isinstance(item, Delivered):
            before = now_held.get(item.bulletin_id)
            if before is None:
                out[index] = StoreOutcome.INSERTED
            elif (item.bulletin_id, before[1]) in now_recalled:
                out[index] = StoreOutcome.DUPLICATE  # withdrawn is final
                continue
            elif before[0] is Release.TEARLINE and item.release is Release.FULL:
                out[index] = StoreOutcome.UPGRADED
            else:
                out[index] = StoreOutcome.DUPLICATE
                continue
            now_held[item.bulletin_id] = (item.release, item.origin)
        elif isinstance(item, Recalled):
            key = (item.bulletin_id, item.origin)
            if key in now_recalled:
                out[index] = RecallOutcome.DUPLICATE
                continue
            now_recalled.add(key)
            owner = now_held.get(item.bulletin_id)
            applies = owner is not None and owner[1] == item.origin
            out[index] = RecallOutcome.APPLIED if applies else RecallOutcome.PENDING
    return out


def revoked_at(issued_at: datetime, recalled_at: datetime) -> datetime:
    """The ``modified`` of a withdrawn bulletin's revoked STIX version (module docstring)."""
    return max(recalled_at, issued_at + _AFTER_EVERY_COPY)


def _parse_stix_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def is_revoked(bundle: Mapping[str, Any]) -> bool:
    return any(o.get("revoked") is True for o in bundle.get("objects", ()))


def revoke_objects(
    objects: Sequence[Mapping[str, Any]], recalled_at: datetime
) -> list[dict[str, Any]]:
    """New versions of a bulletin's own objects (those with a creator), ``revoked: true``;
    shared objects (markings, identities, countries: one fixed content each) unchanged."""
    out: list[dict[str, Any]] = []
    for obj in objects:
        if "created_by_ref" not in obj or obj.get("type") == "identity":
            out.append(dict(obj))
            continue
        issued = _parse_stix_time(str(obj["created"]))
        modified = stix_time(revoked_at(issued, recalled_at))
        out.append({**obj, "modified": modified, "revoked": True})
    return out


def revoked_bundle(
    bundle: Mapping[str, Any], bulletin_id: str, recalled_at: datetime
) -> dict[str, Any]:
    """The bundle of a withdrawn bulletin: its objects' revoked versions (a new bundle id:
    a bundle's id names its content)."""
    return {
        "type": "bundle",
        "id": stix_id("bundle", bulletin_id, "recall"),
        "objects": revoke_objects(bundle["objects"], recalled_at),
    }


def _event_tags(tags: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = [dict(t) for t in tags if t.get("name") != WITHDRAWN_TAG]
    out.append(
        {"name": WITHDRAWN_TAG, "colour": WITHDRAWN_COLOUR, "local": False, "relationship_type": ""}
    )
    return out


def is_withdrawn_event(event: Mapping[str, Any]) -> bool:
    return any(t.get("name") == WITHDRAWN_TAG for t in event["Event"].get("Tag", ()))


def withdrawn_event(event: Mapping[str, Any], recalled_at: datetime) -> dict[str, Any]:
    """A MISP feed event withdrawn: tagged ``enlace:withdrawn="true"``, every attribute
    ``to_ids: false`` (out of MISP's IDS exports), and every timestamp one newer than what
    the feed held (MISP updates an event, and each attribute, only when its timestamp is
    newer), never before the recall."""
    body = event["Event"]
    stamp = str(max(int(body["timestamp"]) + 1, int(recalled_at.timestamp())))

    def attrs(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [{**a, "to_ids": False, "timestamp": stamp} for a in items]

    new: dict[str, Any] = {
        **body,
        "timestamp": stamp,
        "publish_timestamp": stamp,
        "Tag": _event_tags(body.get("Tag", ())),
        "Attribute": attrs(body.get("Attribute", ())),
    }
    if "Object" in body:
        new["Object"] = [
            {**o, "timestamp": stamp, "Attribute": attrs(o.get("Attribute", ()))}
            for o in body["Object"]
        ]
    return {"Event": new}


__all__ = [
    "WITHDRAWN_TAG",
    "is_revoked",
    "is_withdrawn_event",
    "plan_poll",
    "recalled_ids",
    "revoke_objects",
    "revoked_at",
    "revoked_bundle",
    "screen_recalls",
    "superseded_ids",
    "withdrawn_event",
]
