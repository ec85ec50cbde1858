"""Recalls in every file sink and the webhook's body: STIX revoked versions, the MISP event
withdrawn, a JSONL recall line; a sink that never held the bulletin takes a recall too."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import stix2

from consumers.lifecycle import WITHDRAWN_TAG
from consumers.records import Release
from consumers.sinks import JsonlSink, MispFeedSink, StixSink
from consumers.sinks.webhook import idempotency_key
from schemas import misp_vocab as mv
from tests.unit.test_consumer_recall import CO, NOW, bulletin, delivered, recalled

LATER = NOW + timedelta(minutes=3)


def _objects(path: Path) -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in json.loads(path.read_bytes())["objects"]}


async def test_stix_sink_writes_revoked_versions_once(tmp_path: Path) -> None:
    b = bulletin()
    sink = StixSink(str(tmp_path))
    async with sink:
        await sink.put([delivered(b)])
        path = sink.bundle_path(b.bulletin_id)
        before = _objects(path)
        await sink.put([recalled(b.bulletin_id, at=LATER)])
        after = _objects(path)
        written = path.read_bytes()
        await sink.put([recalled(b.bulletin_id, at=LATER, offset=11)])  # another recall id
        assert path.read_bytes() == written  # withdrawn already: nothing rewritten
        await sink.put([delivered(b, Release.FULL, offset=12)])  # a redelivered copy
        assert path.read_bytes() == written
    assert before.keys() == after.keys()
    own = [i for i, o in before.items() if "created_by_ref" in o and o["type"] != "identity"]
    assert own
    for object_id in before:
        old, new = before[object_id], after[object_id]
        if object_id in own:
            assert new["revoked"] is True
            assert new["modified"] > old["modified"]
            assert new["modified"].startswith(LATER.strftime("%Y-%m-%dT%H:%M"))
            assert {k: v for k, v in new.items() if k not in {"revoked", "modified"}} == {
                k: v for k, v in old.items() if k != "modified"
            }
        else:
            assert new == old  # shared objects keep their one content
    stix2.parse(json.loads(written), allow_custom=True)  # still a valid bundle


async def test_stix_sink_revokes_a_bulletin_arriving_after_its_recall(tmp_path: Path) -> None:
    b = bulletin()
    async with StixSink(str(tmp_path)) as sink:
        assert isinstance(sink, StixSink)
        await sink.put([recalled(b.bulletin_id)])  # never held: no error, no bundle
        assert not sink.bundle_path(b.bulletin_id).exists()
        await sink.put([delivered(b, Release.TEARLINE)])
        objects = _objects(sink.bundle_path(b.bulletin_id)).values()
    reports = [o for o in objects if o["type"] == "report"]
    assert reports[0]["revoked"] is True


async def test_stix_sink_ignores_a_recall_by_another_agency(tmp_path: Path) -> None:
    b = bulletin()
    async with StixSink(str(tmp_path)) as sink:
        assert isinstance(sink, StixSink)
        await sink.put([delivered(b)])
        written = sink.bundle_path(b.bulletin_id).read_bytes()
        await sink.put([recalled(b.bulletin_id, CO)])
        assert sink.bundle_path(b.bulletin_id).read_bytes() == written


async def test_misp_sink_withdraws_the_event_and_its_manifest_entry(tmp_path: Path) -> None:
    b = bulletin()
    uuid = mv.event_uuid(b.bulletin_id)
    async with MispFeedSink(str(tmp_path)) as sink:
        assert isinstance(sink, MispFeedSink)
        await sink.put([delivered(b)])
        before = json.loads(sink.event_path(uuid).read_bytes())["Event"]
        await sink.put([recalled(b.bulletin_id, at=LATER)])
        written = sink.event_path(uuid).read_bytes()
        await sink.put([recalled(b.bulletin_id, at=LATER, offset=11)])
        assert sink.event_path(uuid).read_bytes() == written
    after = json.loads(written)["Event"]
    manifest = json.loads((tmp_path / "manifest.json").read_bytes())
    assert int(after["timestamp"]) > int(before["timestamp"])
    assert int(after["timestamp"]) >= int(LATER.timestamp())
    assert manifest[uuid]["timestamp"] == int(after["timestamp"])
    assert WITHDRAWN_TAG in {t["name"] for t in manifest[uuid]["Tag"]}
    assert WITHDRAWN_TAG in {t["name"] for t in after["Tag"]}
    assert any(a["to_ids"] for a in before["Attribute"])  # the sample has IDS indicators
    every = [*after["Attribute"], *(a for o in after.get("Object", ()) for a in o["Attribute"])]
    assert every
    assert not any(a["to_ids"] for a in every)
    assert all(a["timestamp"] == after["timestamp"] for a in every)
    assert [a["uuid"] for a in after["Attribute"]] == [a["uuid"] for a in before["Attribute"]]


async def test_misp_sink_withdraws_an_event_arriving_after_its_recall(tmp_path: Path) -> None:
    b = bulletin()
    uuid = mv.event_uuid(b.bulletin_id)
    async with MispFeedSink(str(tmp_path)) as sink:
        assert isinstance(sink, MispFeedSink)
        await sink.put([recalled(b.bulletin_id)])
        assert not sink.event_path(uuid).exists()
        assert "manifest.json" not in {p.name for p in tmp_path.iterdir()}
        await sink.put([delivered(b, Release.TEARLINE), delivered(b, Release.FULL, offset=1)])
        event = json.loads(sink.event_path(uuid).read_bytes())["Event"]
    names = {t["name"] for t in event["Tag"]}
    assert WITHDRAWN_TAG in names
    assert mv.enlace_tag(mv.RELEASE, "tearline") in names  # the full copy came after: final


async def test_jsonl_sink_appends_a_recall_line(tmp_path: Path) -> None:
    b = bulletin()
    sink = JsonlSink(str(tmp_path / "feed.jsonl"))
    async with sink:
        r = recalled(b.bulletin_id, reason="duplicate of another report")
        await sink.put([delivered(b), r])
    lines = [json.loads(x) for x in (tmp_path / "feed.jsonl").read_text().splitlines()]
    assert [x["type"] for x in lines] == ["bulletin", "recall"]
    assert lines[1]["bulletin_id"] == b.bulletin_id
    assert lines[1]["recall_id"] == r.recall.recall_id
    assert lines[1]["reason"] == "duplicate of another report"
    assert not (tmp_path / "feed.quarantine.jsonl").exists()


def test_webhook_posts_a_recall_event_with_its_own_idempotency_key() -> None:
    b = bulletin()
    r = recalled(b.bulletin_id)
    assert idempotency_key(r) == f"recall:{r.recall.recall_id}"
    assert idempotency_key(r) != idempotency_key(delivered(b))
    body = r.summary_json()
    assert body["type"] == "recall"
    assert body["origin"] == "pa-senafront"
    assert "value_b64" not in body
