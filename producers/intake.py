"""HTTP intake: ``POST /bulletins`` so an agency's existing systems can push bulletins.

Body: one bulletin (JSON object) or a list of them, ``Content-Type: application/json``,
``Authorization: Bearer <http_token>``. Responses (JSON):

- 202 every bulletin was acknowledged by the broker: ``{"published": n, "results":
  [{"bulletin_id", "partition", "offset"}...]}`` in request order;
- 422 some bulletin is invalid, nothing was sent: ``{"errors": [{"index", "field", "rule"}]}``;
- 413 the body is over ``http_max_body_bytes``; 400 not JSON / not an object or list / nested
  deeper than ``MAX_DEPTH`` (checked before parsing); 408 the body did not arrive within
  ``http_read_timeout_s``;
  415 wrong content type; 401 bad or missing bearer token;
- 503 some bulletin was not acknowledged in time: per-bulletin results, failed ones with
  ``error``; re-send those with the same ``bulletin_id`` (the router drops duplicates).

A token is required (``http_token`` or ``http_token_file``): without one the intake refuses
to start unless ``http_insecure_no_auth`` is set, and then only on a loopback address (see
:mod:`producers.intake_access`). The server under it (:class:`enlace.core.http.ServiceHttp`)
closes a connection whose request head is slower than ``http_header_timeout_s`` (408) or
that stays idle for ``http_idle_timeout_s``, answers 400 to a header line over 8 KiB or more
than 64 headers, and serves HTTPS with ``http_tls_cert``/``http_tls_key``.

Ids the intake generates are random: a client that retries a request should put its own
``bulletin_id`` in each bulletin (or reuse the ids from a 503) so the retry deduplicates.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

from aiohttp import web

from enlace.core.clock import Clock, utc_now
from enlace.core.errors import BulletinRefused, CodecError, SignatureError, ValidationError
from enlace.core.logs import get_logger
from producers.intake_access import intake_token
from producers.publisher import DeliveryResult, Publisher, PublishFailure
from producers.settings import PublisherSettings
from schemas.envelope import Sealed
from schemas.models import ThreatBulletin

log = get_logger(__name__)

PATH = "/bulletins"
READ_CHUNK = 65_536
# A bulletin nests a few levels (list > bulletin > entities > identifiers); deeper is hostile,
# and Python's JSON parser would recurse until it fails with a 500.
MAX_DEPTH = 32
JSON_TYPES = ("application/json",)


class _Refused(Exception):
    """An HTTP refusal carried to the handler's single exit."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class HttpIntake:
    def __init__(
        self, settings: PublisherSettings, publisher: Publisher, *, clock: Clock = utc_now
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self._clock = clock
        # Resolved here so no intake exists without its access decided (ConfigError otherwise).
        self._token = intake_token(settings)
        if self._token is None:
            log.warning("intake_without_auth", host=settings.http_host)

    def install(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.post_bulletins)

    async def post_bulletins(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
            objs = self._parse(await self._body(request))
            records = await asyncio.to_thread(self._seal_all, objs)
            status, body = await self._send(records)
        except _Refused as refusal:
            status, body = refusal.status, refusal.body
        self.publisher.metrics.http_status(status)
        headers = {"Retry-After": "5"} if status == 503 else None
        return web.json_response(body, status=status, headers=headers)

    def _authorize(self, request: web.Request) -> None:
        token = self._token
        if token is None:
            return
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise _Refused(401, {"error": "missing or wrong bearer token"})

    async def _body(self, request: web.Request) -> bytes:
        if request.content_type not in JSON_TYPES:
            raise _Refused(415, {"error": "Content-Type must be application/json"})
        limit = self.settings.http_max_body_bytes
        too_large = _Refused(413, {"error": f"body is over the limit of {limit} bytes"})
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        # Read ourselves rather than request.read(): the app-wide client_max_size is not ours.
        chunks: list[bytes] = []
        total = 0
        timeout = self.settings.http_read_timeout_s
        try:
            # A client trickling its body must not hold the intake: the whole body has a deadline.
            async with asyncio.timeout(timeout):
                while chunk := await request.content.read(READ_CHUNK):
                    total += len(chunk)
                    if total > limit:
                        raise too_large
                    chunks.append(chunk)
        except TimeoutError:
            raise _Refused(408, {"error": f"body not received within {timeout:g} s"}) from None
        return b"".join(chunks)

    @staticmethod
    def _parse(body: bytes) -> list[Any]:
        depth = nesting_depth(body)
        if depth > MAX_DEPTH:
            raise _Refused(400, {"error": f"body nests {depth} levels deep (at most {MAX_DEPTH})"})
        try:
            doc = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
        except UnicodeDecodeError:
            raise _Refused(400, {"error": "body is not valid UTF-8"}) from None
        except json.JSONDecodeError as exc:
            detail = f"{exc.msg} (line {exc.lineno} column {exc.colno})"
            raise _Refused(400, {"error": f"body is not valid JSON: {detail}"}) from None
        except ValueError as exc:
            raise _Refused(400, {"error": f"body is not valid JSON: {exc}"}) from None
        objs = [doc] if isinstance(doc, dict) else doc
        if not isinstance(objs, list):
            raise _Refused(400, {"error": "body must be a bulletin object or a list of them"})
        if not objs:
            raise _Refused(400, {"error": "body contains no bulletins"})
        return objs

    def _seal_all(self, objs: list[Any]) -> list[tuple[ThreatBulletin, Sealed]]:
        now = self._clock()
        records: list[tuple[ThreatBulletin, Sealed]] = []
        errors: list[dict[str, Any]] = []
        refused: set[int] = set()
        for index, obj in enumerate(objs):
            try:
                records.append(self.publisher.seal(obj, now))
            except ValidationError as exc:
                problems = exc.problems or [("(record)", str(exc))]
                errors.extend({"index": index, "field": f, "rule": r} for f, r in problems)
            except (CodecError, SignatureError) as exc:
                errors.append({"index": index, "field": "(record)", "rule": str(exc)})
            except BulletinRefused as exc:
                # Counted (reason clock_skew) and logged here; not counted again as invalid.
                claimed = obj.get("bulletin_id") if isinstance(obj, dict) else None
                self.publisher.refused(claimed if isinstance(claimed, str) else None, exc)
                refused.add(index)
                errors.append(
                    {"index": index, "field": "issued_at", "rule": str(exc), "reason": exc.reason}
                )
        if errors:
            invalid = len({e["index"] for e in errors} - refused)
            if invalid:
                self.publisher.metrics.reject("invalid", invalid)
            raise _Refused(422, {"published": 0, "errors": errors})
        return records

    async def _send(
        self, records: list[tuple[ThreatBulletin, Sealed]]
    ) -> tuple[int, dict[str, Any]]:
        outcomes = await self.publisher.send_sealed(records)
        results: list[dict[str, Any]] = []
        for outcome in outcomes:
            if isinstance(outcome, DeliveryResult):
                results.append(
                    {
                        "bulletin_id": outcome.bulletin_id,
                        "partition": outcome.partition,
                        "offset": outcome.offset,
                    }
                )
            else:
                results.append(_failure(outcome))
        published = sum(isinstance(o, DeliveryResult) for o in outcomes)
        log.info("http_intake", bulletins=len(records), published=published)
        body = {"published": published, "results": results}
        return (202 if published == len(records) else 503), body


def _failure(outcome: PublishFailure) -> dict[str, Any]:
    return {
        "bulletin_id": outcome.bulletin_id,
        "reason": outcome.reason,
        "error": str(outcome.error),
    }


def nesting_depth(body: bytes) -> int:
    """The deepest ``[``/``{`` nesting of a JSON text, outside strings, without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest
