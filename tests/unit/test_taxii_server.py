"""The TAXII 2.1 server as partners' tools see it: the OASIS taxii2-client walks it, an
OpenCTI-style poller follows it while bulletins arrive, and every refusal is the spec's."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from taxii2client.common import TokenAuth
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from consumers.records import Release
from consumers.stix_index.collections import ALL, BY_ID, category_collection
from consumers.store import BulletinStore
from consumers.taxii.cli import taxii_settings
from consumers.taxii.server import TAXII_MEDIA_TYPE, Credentials, TaxiiServer
from enlace.core.errors import ConfigError
from schemas.vocab import Category
from tests.taxii_support import (
    NOW,
    PASSWORD,
    TOKEN,
    USER,
    bulletins,
    fill,
    latest_objects,
)

HELD = bulletins(45)
UPGRADED = HELD[:6]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "inbox.sqlite3"
    store = BulletinStore.open(path)
    fill(store, UPGRADED, release=Release.TEARLINE)
    fill(store, HELD, at=NOW + timedelta(seconds=1))
    store.close()
    return path


@pytest.fixture
async def server(store_path: Path) -> AsyncIterator[TaxiiServer]:
    credentials = Credentials(username=USER, password=PASSWORD, token=TOKEN)
    async with TaxiiServer(store_path, credentials, max_page=25) as running:
        yield running


def _collection(server: TaxiiServer, name: str, **auth: Any) -> Collection:
    api = Server(f"{server.url}/taxii2/", **auth).api_roots[0]
    assert isinstance(api, ApiRoot)
    (found,) = [c for c in api.collections if BY_ID[c.id].name == name]
    return found


def _walk(collection: Collection, per_request: int) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for envelope in as_pages(collection.get_objects, per_request=per_request):
        objects += envelope.get("objects", [])
    return objects


async def test_taxii2_client_walks_discovery_collections_and_every_page(
    server: TaxiiServer,
) -> None:
    def walk() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str], list[str]]:
        whole = _collection(server, ALL, user=USER, password=PASSWORD)
        assert whole.can_read
        assert not whole.can_write
        objects = _walk(whole, per_request=10)
        manifest: list[dict[str, Any]] = []
        for envelope in as_pages(whole.get_manifest, per_request=10):
            manifest += envelope.get("objects", [])
        report = next(o for o in objects if o["type"] == "report" and "tearline" not in o["labels"])
        upgraded = f"report--{report['id'].split('--')[1]}"
        versions = whole.object_versions(upgraded)["versions"]
        one = whole.get_object(upgraded)["objects"]
        return objects, manifest, versions, [o["id"] for o in one]

    objects, manifest, _, one = await asyncio.to_thread(walk)
    expected = latest_objects([(b, Release.FULL) for b in HELD])
    assert {o["id"]: o for o in objects} == expected
    assert len(objects) == len(expected)  # each object once
    assert [m["id"] for m in manifest] == [o["id"] for o in objects]
    assert all(
        m["version"] == (o.get("modified") or o["created"])
        for m, o in zip(manifest, objects, strict=True)
    )
    assert len(one) == 1


async def test_an_upgraded_report_has_two_versions(server: TaxiiServer) -> None:
    def versions() -> tuple[list[str], list[dict[str, Any]]]:
        whole = _collection(server, ALL, user=USER, password=PASSWORD)
        report_id = next(
            o["id"]
            for o in whole.get_objects(type="report", limit=100)["objects"]
            if o["external_references"][0]["external_id"] == UPGRADED[0].bulletin_id
        )
        listed = whole.object_versions(report_id)["versions"]
        both = whole.get_object(report_id, version="all")["objects"]
        return listed, both

    listed, both = await asyncio.to_thread(versions)
    assert len(listed) == 2
    assert listed == sorted(listed)
    assert [o["modified"] for o in both] == listed
    assert both[0]["labels"] != both[1]["labels"]  # the tearline's, then the full copy's


async def test_a_category_collection_is_whole_on_its_own(server: TaxiiServer) -> None:
    def cyber() -> list[dict[str, Any]]:
        return _walk(
            _collection(server, category_collection(Category.CYBER), user=USER, password=PASSWORD),
            8,
        )

    objects = await asyncio.to_thread(cyber)
    reports = [o for o in objects if o["type"] == "report"]
    wanted = {b.bulletin_id for b in HELD if b.category is Category.CYBER}
    assert {r["external_references"][0]["external_id"] for r in reports} == wanted
    ids = {o["id"] for o in objects}
    for obj in objects:
        refs = [*obj.get("object_refs", ()), *obj.get("object_marking_refs", ())]
        refs += [obj["created_by_ref"]] if "created_by_ref" in obj else []
        assert set(refs) <= ids, obj["id"]
    assert any(o["type"] == "indicator" for o in objects)


async def test_a_bearer_token_is_accepted_as_taxii2_client_sends_it(server: TaxiiServer) -> None:
    def walk() -> int:
        return len(_walk(_collection(server, ALL, auth=TokenAuth(TOKEN)), 50))

    assert await asyncio.to_thread(walk) > 0
    headers = {"Accept": TAXII_MEDIA_TYPE, "Authorization": f"Bearer {TOKEN}"}
    answer = await asyncio.to_thread(
        requests.get, f"{server.url}/taxii2/", headers=headers, timeout=5
    )
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/taxii2/", {}, 401),
        ("/taxii2/", {"Authorization": "Basic b3BlbmN0aTp3cm9uZw=="}, 401),  # opencti:wrong
        ("/taxii2/", {"Authorization": "Bearer wrong"}, 401),
        ("/enlace/collections/", {"Authorization": "Token nope"}, 401),
        ("/nowhere/", {}, 401),
    ],
)
async def test_without_valid_credentials_everything_is_refused(
    server: TaxiiServer, path: str, headers: dict[str, str], status: int
) -> None:
    answer = await asyncio.to_thread(
        requests.get,
        f"{server.url}{path}",
        headers={"Accept": TAXII_MEDIA_TYPE, **headers},
        timeout=5,
    )
    assert answer.status_code == status
    assert answer.headers["Content-Type"] == TAXII_MEDIA_TYPE
    assert answer.json()["http_status"] == str(status)
    assert "WWW-Authenticate" in answer.headers


def _get(
    server: TaxiiServer, path: str, accept: str = TAXII_MEDIA_TYPE, method: str = "GET"
) -> requests.Response:
    return requests.request(
        method, f"{server.url}{path}", headers={"Accept": accept}, auth=(USER, PASSWORD), timeout=5
    )


async def test_refusals_are_the_spec_s(server: TaxiiServer) -> None:
    whole = next(cid for cid, c in BY_ID.items() if c.name == ALL)
    objects = f"/enlace/collections/{whole}/objects/"
    cases = [
        ("/taxii2/", "application/json", "GET", 406),
        ("/taxii2/", "application/taxii+json;version=2.0", "GET", 406),
        ("/taxii2/", "application/taxii+json", "GET", 200),
        ("/enlace/collections/00000000-0000-4000-8000-000000000000/", TAXII_MEDIA_TYPE, "GET", 404),
        (f"{objects}report--00000000-0000-4000-8000-000000000000/", TAXII_MEDIA_TYPE, "GET", 404),
        (f"{objects}?added_after=yesterday", TAXII_MEDIA_TYPE, "GET", 400),
        (f"{objects}?limit=0", TAXII_MEDIA_TYPE, "GET", 400),
        (f"{objects}?next=garbage", TAXII_MEDIA_TYPE, "GET", 400),
        (f"{objects}?match[version]=sometime", TAXII_MEDIA_TYPE, "GET", 400),
        (objects, TAXII_MEDIA_TYPE, "POST", 403),
        ("/enlace/status/1234/", TAXII_MEDIA_TYPE, "GET", 404),
    ]
    for path, accept, method, status in cases:
        answer = await asyncio.to_thread(_get, server, path, accept, method)
        assert answer.status_code == status, (path, accept, method, answer.text)
        assert answer.headers["Content-Type"] == TAXII_MEDIA_TYPE


async def test_match_filters_and_limits(server: TaxiiServer) -> None:
    def query() -> dict[str, Any]:
        whole = _collection(server, ALL, user=USER, password=PASSWORD)
        indicators = whole.get_objects(type="indicator", limit=1000)["objects"]
        first = indicators[0]["id"]
        return {
            "types": {o["type"] for o in indicators},
            "by_id": whole.get_objects(id=[first])["objects"],
            "first": first,
            "spec": whole.get_objects(spec_version="2.0")["objects"],
            "page": whole.get_objects(limit=3),
            "capped": whole.get_objects(limit=10_000),
        }

    got = await asyncio.to_thread(query)
    assert got["types"] == {"indicator"}
    assert [o["id"] for o in got["by_id"]] == [got["first"]]
    assert got["spec"] == []
    assert len(got["page"]["objects"]) == 3
    assert got["page"]["more"] is True
    assert len(got["capped"]["objects"]) == 25  # the server's page bound


async def test_an_opencti_style_poll_sees_every_object_once_while_bulletins_arrive(
    store_path: Path, server: TaxiiServer
) -> None:
    stop = threading.Event()
    more = bulletins(120, seed=7)

    def publish() -> None:
        store = BulletinStore.open(store_path)
        try:
            for n in range(0, len(more), 10):
                fill(store, more[n : n + 10], at=NOW + timedelta(seconds=2))
        finally:
            store.close()
            stop.set()

    def poll() -> list[tuple[str, str]]:
        whole = _collection(server, ALL, user=USER, password=PASSWORD)
        seen: list[tuple[str, str]] = []
        params: dict[str, str] = {"limit": "17"}
        idle_after_stop = 0
        while idle_after_stop < 2:
            answer = requests.get(
                whole.objects_url,
                params=params,
                headers={"Accept": TAXII_MEDIA_TYPE},
                auth=(USER, PASSWORD),
                timeout=5,
            )
            answer.raise_for_status()
            page = answer.json()
            seen += [(o["id"], o.get("modified") or o["created"]) for o in page["objects"]]
            # OpenCTI's rule: resume after the last page's X-TAXII-Date-Added-Last.
            params["added_after"] = answer.headers["X-TAXII-Date-Added-Last"]
            if not page["objects"] and stop.is_set():
                idle_after_stop += 1
        return seen

    writer = threading.Thread(target=publish)
    writer.start()
    seen = await asyncio.to_thread(poll)
    writer.join()
    assert len(seen) == len(set(seen))
    # Versions of the same object may both be seen (a poller follows every version added).
    expected = latest_objects([(b, Release.FULL) for b in [*HELD, *more]])
    assert {oid for oid, _ in seen} == set(expected)
    assert any(oid.startswith("report--") for oid, _ in seen)


def test_credentials_compare_and_anonymous() -> None:
    creds = Credentials(username="a", password="b")
    assert creds.allows("Basic YTpi")
    assert not creds.allows("Basic YTpj")
    assert not creds.allows(None)
    assert not creds.allows("Basic !!")
    assert not creds.allows("Bearer b")
    assert Credentials(anonymous=True).allows(None)


@pytest.fixture
def misp_dir(tmp_path: Path) -> Path:
    feed = tmp_path / "misp"
    feed.mkdir()
    (feed / "manifest.json").write_text('{"x": {}}')
    (feed / "hashes.csv").write_text("a,b\n")
    return feed


async def test_a_misp_feed_directory_is_served_behind_the_same_auth(
    store_path: Path, misp_dir: Path
) -> None:
    creds = Credentials(username=USER, password=PASSWORD)
    async with TaxiiServer(store_path, creds, misp_feed=misp_dir) as running:
        ok = await asyncio.to_thread(
            requests.get, f"{running.url}/misp/manifest.json", auth=(USER, PASSWORD), timeout=5
        )
        assert ok.status_code == 200
        assert ok.json() == {"x": {}}
        csv = await asyncio.to_thread(
            requests.get, f"{running.url}/misp/hashes.csv", auth=(USER, PASSWORD), timeout=5
        )
        assert csv.text == "a,b\n"
        for path, status in (("/misp/manifest.json", 401), ("/misp/..%2Fsecret", 404)):
            auth = None if status == 401 else (USER, PASSWORD)
            answer = await asyncio.to_thread(
                requests.get, f"{running.url}{path}", auth=auth, timeout=5
            )
            assert answer.status_code == status


def test_a_server_without_credentials_refuses_to_start_unless_anonymous_on_purpose(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="no credentials"):
        taxii_settings(db=tmp_path / "s.db")
    with pytest.raises(ConfigError, match="both username and password"):
        taxii_settings(db=tmp_path / "s.db", username="u")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        taxii_settings(db=tmp_path / "s.db", token="t", listen="9500")
    assert taxii_settings(db=tmp_path / "s.db", anonymous=True).anonymous
    served = taxii_settings(db=tmp_path / "s.db", token="tok3n", listen="127.0.0.1:0")
    assert (served.host, served.port) == ("127.0.0.1", 0)
    assert "tok3n" not in repr(served)
