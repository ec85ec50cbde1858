"""Failure reasons and the HTTP intake's answer when the broker does not acknowledge."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from enlace.core.errors import (
    DeliveryError,
    DeliveryTimeout,
    KafkaUnavailable,
    RecordTooLarge,
    ValidationError,
)
from producers.intake import HttpIntake, _Refused
from producers.publisher import DeliveryResult, PublishFailure, reason_of
from producers.settings import PublisherSettings
from schemas.envelope import Sealed
from schemas.models import ThreatBulletin
from tests.samples import sample_bulletin


def test_reasons_are_stable_codes() -> None:
    assert reason_of(ValidationError("x", [("title", "must not be blank")])) == "invalid"
    assert (
        reason_of(ValidationError("x", [("origin", "must be the publisher's")])) == "wrong_origin"
    )
    assert reason_of(RecordTooLarge("x")) == "oversize"
    assert reason_of(KafkaUnavailable("x")) == "unavailable"
    assert reason_of(DeliveryTimeout("bulletin b not acknowledged within 3 s")) == "timeout"
    assert reason_of(DeliveryError("broker refused bulletin b")) == "refused"
    # The type decides, never the wording.
    assert reason_of(DeliveryError("not acknowledged: refused")) == "refused"


class HalfDelivering:
    """Acknowledges the first record and not the second."""

    async def send_sealed(self, records: Sequence[tuple[ThreatBulletin, Sealed]]) -> list[Any]:
        first, second = (bulletin for bulletin, _ in records)
        return [
            DeliveryResult(first.bulletin_id, "t", 0, 7),
            PublishFailure(second.bulletin_id, "timeout", DeliveryError("not acknowledged")),
        ]


async def test_intake_answers_503_with_per_bulletin_results() -> None:
    settings = PublisherSettings(agency="pa-senafront", http_token="t0ken")
    intake = HttpIntake(settings, HalfDelivering())  # type: ignore[arg-type]  # a stand-in publisher
    bulletins = [sample_bulletin(), sample_bulletin()]
    empty = Sealed(b"", b"", b"", [])
    status, body = await intake._send([(b, empty) for b in bulletins])
    assert status == 503
    assert body["published"] == 1
    ok, failed = body["results"]
    assert ok == {"bulletin_id": bulletins[0].bulletin_id, "partition": 0, "offset": 7}
    assert failed["bulletin_id"] == bulletins[1].bulletin_id
    assert failed["reason"] == "timeout"


def test_deep_json_is_refused_before_parsing_with_400_not_500() -> None:
    from producers.intake import MAX_DEPTH, nesting_depth

    assert nesting_depth(b'{"a": [1, {"b": "[[[[{{"}]}') == 3, "brackets in strings do not count"
    assert nesting_depth(b'["\\"[", 1]') == 1, "an escaped quote does not end the string"
    hostile = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(_Refused) as refused:
        HttpIntake._parse(hostile)
    assert refused.value.status == 400
    assert f"at most {MAX_DEPTH}" in refused.value.body["error"]
    assert HttpIntake._parse(b'[{"title": "ok"}]') == [{"title": "ok"}]
