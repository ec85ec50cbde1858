"""The tearline projection: the sanitized, releasable part of a bulletin.

An allowlist, not a blocklist: a field added in a later schema version stays out of the
tearline until someone decides it belongs there. Kept: identity and handling markings
(id, origin, times, TLP, caveats, releasable_to, source grading), title, summary, category,
severity, the location's country and the route's countries. Dropped: details, entities,
indicators, seizure, references, exact coordinates and place names. The projection is
classified at the bulletin's ``tearline_classification``.
"""

from __future__ import annotations

from schemas.bulletin import BulletinEnvelope
from schemas.models import Location, Route, ThreatBulletin


def tearline(bulletin: ThreatBulletin) -> ThreatBulletin:
    """The tearline of ``bulletin`` (pure and deterministic; idempotent)."""
    location = (
        Location(country=bulletin.location.country) if bulletin.location is not None else None
    )
    route = (
        Route(
            mode=bulletin.route.mode,
            from_country=bulletin.route.from_country,
            to_country=bulletin.route.to_country,
            via=bulletin.route.via,
        )
        if bulletin.route is not None
        else None
    )
    return ThreatBulletin(
        bulletin_id=bulletin.bulletin_id,
        origin=bulletin.origin,
        origin_country=bulletin.origin_country,
        issued_at=bulletin.issued_at,
        valid_until=bulletin.valid_until,
        category=bulletin.category,
        severity=bulletin.severity,
        classification=bulletin.tearline_classification,
        tlp=bulletin.tlp,
        releasable_to=bulletin.releasable_to,
        caveats=bulletin.caveats,
        tearline_classification=bulletin.tearline_classification,
        title=bulletin.title,
        summary=bulletin.summary,
        details=None,
        source_reliability=bulletin.source_reliability,
        info_credibility=bulletin.info_credibility,
        source_type=bulletin.source_type,
        location=location,
        route=route,
        entities=(),
        seizure=None,
        indicators=(),
        references=(),
        language=bulletin.language,
    )


def is_tearline(bulletin: ThreatBulletin) -> bool:
    """Whether ``bulletin`` already carries nothing above its tearline."""
    return tearline(bulletin) == bulletin


def tearline_envelope(envelope: BulletinEnvelope) -> BulletinEnvelope:
    """The envelope of :func:`tearline` of a bulletin with ``envelope``: what a tearline body
    must agree with (the projection keeps every envelope field but these two)."""
    return envelope.model_copy(
        update={"classification": envelope.tearline_classification, "references": ()}
    )
