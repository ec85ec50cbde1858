"""``enlace consumer run --taxii``: a partner's consumer on the real broker serves what it
stores over TAXII 2.1, and an OpenCTI-style client following it gets each bulletin once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from taxii2client.v21 import Server, as_pages

from enlace.core.settings import KafkaSettings
from schemas.envelope import seal
from tests.feed_records import feed_message
from tests.integration.test_consumer_service import CR, DIRECTORY, PA, bulletins, produce
from tests.support import eventually

pytestmark = pytest.mark.integration
USER, PASSWORD = "opencti", "pass-of-opencti"


def _taxii_url(log: Path) -> str | None:
    for line in log.read_bytes().splitlines():
        if line.startswith(b"{"):
            entry = json.loads(line)
            if entry.get("event") == "taxii_listening":
                return str(entry["url"])
    return None


def _reports(url: str) -> list[dict[str, Any]]:
    api = Server(f"{url}/taxii2/", user=USER, password=PASSWORD).api_roots[0]
    whole = next(c for c in api.collections if c.title == "Enlace feed")
    reports: list[dict[str, Any]] = []
    for page in as_pages(whole.get_objects, per_request=50, type="report"):
        reports += page.get("objects", [])
    return reports


async def _count(url: str, want: int) -> bool:
    return len(await asyncio.to_thread(_reports, url)) == want


async def test_consumer_serves_its_store_over_taxii(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    make_topics: Callable[..., Awaitable[list[str]]],
    tmp_path: Path,
) -> None:
    prefix = unique("")
    feed, receipts = f"{prefix}enlace.feed.cr-msp", f"{prefix}enlace.receipts.cr-msp"
    await make_topics(feed, receipts)
    DIRECTORY.dump(tmp_path / "keys.yaml")
    key_file = CR.save(tmp_path / "private")
    first, later = bulletins(6), bulletins(4)
    await produce(kafka_settings, feed, [feed_message(seal(b, PA), "full") for b in first])
    log = tmp_path / "consumer.log"
    env = {
        **os.environ,
        "ENLACE_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "ENLACE_AGENCY": "cr-msp",
        "ENLACE_TOPIC_PREFIX": prefix,
        "ENLACE_KEYS_FILE": str(tmp_path / "keys.yaml"),
        "ENLACE_KEY_FILE": str(key_file),
        "ENLACE_STATE_DIR": str(tmp_path / "state"),
        "ENLACE_SINKS": json.dumps([f"sqlite:{tmp_path / 'inbox.sqlite3'}"]),
        "ENLACE_POLL_TIMEOUT_MS": "100",
        "ENLACE_LOG_FORMAT": "json",
        "ENLACE_TAXII_USERNAME": USER,
        "ENLACE_TAXII_PASSWORD": PASSWORD,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
            [sys.executable, "-m", "enlace.cli", "consumer", "run", "--taxii", "127.0.0.1:0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await eventually(lambda: _taxii_url(log) is not None, "the TAXII server listens")
        url = _taxii_url(log)
        assert url is not None
        await eventually(lambda: _count(url, 6), "the first six bulletins served")
        await produce(kafka_settings, feed, [feed_message(seal(b, PA), "full") for b in later])
        await eventually(lambda: _count(url, 10), "all ten bulletins served")
        reports = await asyncio.to_thread(_reports, url)
        assert sorted(r["external_references"][0]["external_id"] for r in reports) == sorted(
            b.bulletin_id for b in [*first, *later]
        )
        refused = await asyncio.to_thread(requests.get, f"{url}/taxii2/", timeout=5)
        assert refused.status_code == 401
        assert PASSWORD not in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0
