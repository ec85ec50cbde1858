"""The TAXII 2.1 HTTP face of a partner's store (aiohttp).

Endpoints (TAXII 2.1 section 4-5): discovery ``/taxii2/``, one API root ``/enlace/``, its
collections, and per collection ``objects/`` (``added_after``, ``limit``, ``next``,
``match[...]``), ``objects/{id}/``, ``objects/{id}/versions/`` and ``manifest/``. Collections
are read-only: writes are 403. ``/misp/`` serves a MISP feed directory when one is configured
(MISP adds it as a Network feed), behind the same authentication.

Every TAXII response is ``application/taxii+json;version=2.1``; a request that does not
accept it is a 406, an unknown collection or object a 404, a bad parameter a 400, and a
request without valid credentials a 401 (HTTP Basic, or a bearer token as ``Bearer`` or
``Token``, the scheme taxii2-client sends). Errors are TAXII error messages.

Paged responses carry ``X-TAXII-Date-Added-First`` and ``-Last``: the first and last
``date_added`` of the page. OpenCTI resumes from ``-Last``; on an empty page both are the
``added_after`` the client sent (or the epoch), so a poller never jumps ahead of what it saw.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from consumers.stix_index import index
from consumers.stix_index.collections import BY_ID, CATALOG, Collection
from consumers.stix_index.timestamps import format_us
from consumers.taxii.params import DEFAULT_PAGE, PageRequest, encode_next, page_request
from consumers.taxii.reader import StoreReader
from enlace.core.errors import SinkError, TaxiiRefusal
from enlace.core.http import ServiceHttp
from enlace.core.logs import get_logger

TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
STIX_MEDIA_TYPE = "application/stix+json;version=2.1"
API_ROOT = "enlace"
EPOCH_TEXT = format_us(0)
_MISP_FILE = re.compile(r"(manifest\.json|hashes\.csv|[0-9a-f-]{36}\.json)", re.ASCII)
_UNPROTECTED = frozenset({"/metrics", "/health"})

log = get_logger("enlace.taxii")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TaxiiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "enlace_taxii_requests",
            "TAXII requests answered, by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.objects = Counter(
            "enlace_taxii_objects_served",
            "STIX objects (or manifest entries) returned.",
            registry=self.registry,
        )
        self.seconds = Histogram(
            "enlace_taxii_request_seconds",
            "Time to answer a TAXII request, by endpoint.",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )


def _accepts_taxii(accept: str) -> bool:
    for media_range in accept.split(","):
        kind, *params = (part.strip().lower() for part in media_range.split(";"))
        if kind != "application/taxii+json":
            continue
        versions = [p.partition("=")[2].strip() for p in params if p.startswith("version")]
        if not versions or versions[0] == "2.1":
            return True
    return False


def _taxii(body: Mapping[str, Any] | str, headers: Mapping[str, str] | None = None) -> web.Response:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    response = web.Response(text=text, headers=dict(headers or {}))
    response.headers["Content-Type"] = TAXII_MEDIA_TYPE
    return response


def _error(refusal: TaxiiRefusal) -> web.Response:
    response = _taxii(
        {
            "title": refusal.title,
            "description": refusal.description,
            "http_status": str(refusal.http_status),
        }
    )
    response.set_status(refusal.http_status)
    if refusal.http_status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="enlace-taxii", charset="UTF-8"'
    return response


def _endpoint(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


class Credentials:
    """Who may read: a Basic user and password and/or a bearer token, compared in constant
    time; or anyone, when the server is anonymous on purpose."""

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        anonymous: bool = False,
    ) -> None:
        self._basic = f"{username}:{password}".encode() if username is not None else None
        self._token = token.encode() if token is not None else None
        self.anonymous = anonymous

    def allows(self, authorization: str | None) -> bool:
        if self.anonymous:
            return True
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        scheme = scheme.lower()
        if scheme == "basic" and self._basic is not None:
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(given, self._basic)
        if scheme in {"bearer", "token"} and self._token is not None:
            return hmac.compare_digest(value.encode(), self._token)
        return False


class TaxiiServer:
    """``start()`` listens, ``stop()`` closes; reads the store at ``db`` without writing it."""

    def __init__(
        self,
        db: Path,
        credentials: Credentials,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        title: str = "Enlace",
        max_page: int = DEFAULT_PAGE,
        misp_feed: Path | None = None,
        ssl_context: Any = None,
        read_threads: int = 4,
        metrics: TaxiiMetrics | None = None,
    ) -> None:
        self.metrics = metrics or TaxiiMetrics()
        self._credentials = credentials
        self._title = title
        self._max_page = max_page
        self._misp_feed = misp_feed
        self._reader = StoreReader(db, threads=read_threads)
        self.http = ServiceHttp(
            self.metrics.registry, host=host, port=port, ssl_context=ssl_context
        )
        app = self.http.app
        app.middlewares.append(self._guard)
        root = f"/{API_ROOT}"
        routes = [
            ("/taxii2/", self._discovery),
            (f"{root}/", self._api_root),
            (f"{root}/collections/", self._collections),
            (f"{root}/collections/{{cid}}/", self._collection),
            (f"{root}/collections/{{cid}}/objects/", self._objects),
            (f"{root}/collections/{{cid}}/objects/{{oid}}/", self._object),
            (f"{root}/collections/{{cid}}/objects/{{oid}}/versions/", self._versions),
            (f"{root}/collections/{{cid}}/manifest/", self._manifest),
            (f"{root}/status/{{sid}}/", self._status),
        ]
        for path, handler in routes:
            app.router.add_get(path, handler)
        app.router.add_route("POST", f"{root}/collections/{{cid}}/objects/", self._read_only)
        app.router.add_route(
            "DELETE", f"{root}/collections/{{cid}}/objects/{{oid}}/", self._read_only
        )
        if misp_feed is not None:
            app.router.add_get("/misp/", self._misp_index)
            app.router.add_get("/misp/{name}", self._misp_file)

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def port(self) -> int | None:
        return self.http.port

    async def start(self) -> None:
        await self._reader.start()
        try:
            await self.http.start()
        except BaseException:
            await self._reader.stop()
            raise
        log.info("taxii_listening", url=self.http.url, api_root=f"{self.http.url}/{API_ROOT}/")

    async def stop(self) -> None:
        await self.http.stop()
        await self._reader.stop()

    async def __aenter__(self) -> TaxiiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- the guard: auth, media type, errors, metrics ---------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _UNPROTECTED:
            return await handler(request)
        endpoint = _endpoint(request)
        started = time.perf_counter()
        try:
            self._admit(request)
            response = await handler(request)
        except TaxiiRefusal as refusal:
            response = _error(refusal)
        except web.HTTPException as exc:
            # aiohttp's own 404/405 for paths no route matches: as TAXII errors.
            response = _error(TaxiiRefusal(exc.status, exc.reason))
        except SinkError as exc:
            log.error("taxii_store_error", error=str(exc))  # noqa: TRY400 - no traceback: the store's state, not a bug
            response = _error(TaxiiRefusal(503, "store unavailable", "try again later"))
        self.metrics.requests.labels(endpoint, str(response.status)).inc()
        self.metrics.seconds.labels(endpoint).observe(time.perf_counter() - started)
        return response

    def _admit(self, request: web.Request) -> None:
        """Credentials first (a 401 tells nothing about what exists), then the media type."""
        if not self._credentials.allows(request.headers.get("Authorization")):
            raise TaxiiRefusal(401, "authentication required", "HTTP Basic or a bearer token")
        if not request.path.startswith("/misp/") and not _accepts_taxii(
            request.headers.get("Accept", "")
        ):
            raise TaxiiRefusal(
                406, "not acceptable", f"this server answers only {TAXII_MEDIA_TYPE}"
            )

    # -- discovery ------------------------------------------------------------------------

    @staticmethod
    def _root_url(request: web.Request) -> str:
        # Absolute, as the client reached us: some clients do not resolve relative roots.
        return f"{request.url.origin()}/{API_ROOT}/"

    async def _discovery(self, request: web.Request) -> web.Response:
        return _taxii(
            {
                "title": f"{self._title} TAXII",
                "description": "This agency's Enlace feed as STIX 2.1 (read-only).",
                "default": self._root_url(request),
                "api_roots": [self._root_url(request)],
            }
        )

    async def _api_root(self, _request: web.Request) -> web.Response:
        return _taxii(
            {
                "title": self._title,
                "description": "Collections of this agency's received bulletins.",
                "versions": [TAXII_MEDIA_TYPE],
                "max_content_length": 0,
            }
        )

    @staticmethod
    def _collection_json(collection: Collection) -> dict[str, Any]:
        return {
            "id": collection.id,
            "title": collection.title,
            "description": collection.description,
            "can_read": True,
            "can_write": False,
            "media_types": [STIX_MEDIA_TYPE],
        }

    async def _collections(self, _request: web.Request) -> web.Response:
        return _taxii({"collections": [self._collection_json(c) for c in CATALOG]})

    @staticmethod
    def _collection_of(request: web.Request) -> Collection:
        collection = BY_ID.get(request.match_info["cid"])
        if collection is None:
            raise TaxiiRefusal(404, "no such collection", request.match_info["cid"])
        return collection

    async def _collection(self, request: web.Request) -> web.Response:
        return _taxii(self._collection_json(self._collection_of(request)))

    async def _status(self, _request: web.Request) -> web.Response:
        raise TaxiiRefusal(404, "no such status", "this server accepts no writes")

    async def _read_only(self, request: web.Request) -> web.Response:
        self._collection_of(request)
        raise TaxiiRefusal(403, "read-only collection", "partners publish through Enlace")

    # -- pages ------------------------------------------------------------------------------

    def _page_headers(self, page: index.Page, wanted: PageRequest) -> dict[str, str]:
        if page.rows:
            first, last = format_us(page.rows[0].added_us), format_us(page.rows[-1].added_us)
        else:
            after = wanted.filter.added_after_us
            first = last = format_us(after) if after is not None else EPOCH_TEXT
        return {"X-TAXII-Date-Added-First": first, "X-TAXII-Date-Added-Last": last}

    @staticmethod
    def _more(page: index.Page) -> str:
        if not page.more:
            return '"more":false'
        return f'"more":true,"next":"{encode_next(page.rows[-1].added_us)}"'

    async def _read_page(
        self,
        collection: Collection,
        wanted: PageRequest,
        read: Callable[..., index.Page],
        *,
        must_exist: str | None = None,
    ) -> index.Page:
        def work(conn: sqlite3.Connection) -> index.Page:
            if must_exist is not None and not index.object_known(conn, collection.name, must_exist):
                raise TaxiiRefusal(404, "no such object", must_exist)
            return read(
                conn, collection.name, wanted.filter, after_us=wanted.after_us, limit=wanted.limit
            )

        page = await self._reader.call(work)
        self.metrics.objects.inc(len(page.rows))
        return page

    def _objects_response(self, page: index.Page, wanted: PageRequest) -> web.Response:
        # Bodies are stored as JSON text: the envelope is assembled, never re-encoded.
        body = f'{{{self._more(page)},"objects":[{",".join(r.body for r in page.rows)}]}}'
        return _taxii(body, self._page_headers(page, wanted))

    async def _objects(self, request: web.Request) -> web.Response:
        collection = self._collection_of(request)
        wanted = page_request(request.query, max_page=self._max_page)
        page = await self._read_page(collection, wanted, index.objects_page)
        return self._objects_response(page, wanted)

    async def _object(self, request: web.Request) -> web.Response:
        collection = self._collection_of(request)
        oid = request.match_info["oid"]
        wanted = page_request(request.query, max_page=self._max_page, object_id=oid)
        page = await self._read_page(collection, wanted, index.objects_page, must_exist=oid)
        return self._objects_response(page, wanted)

    async def _versions(self, request: web.Request) -> web.Response:
        collection = self._collection_of(request)
        oid = request.match_info["oid"]
        wanted = page_request(request.query, max_page=self._max_page, object_id=oid, versions=True)
        page = await self._read_page(collection, wanted, index.manifest_page, must_exist=oid)
        versions = json.dumps([r.version for r in page.rows])
        return _taxii(
            f'{{{self._more(page)},"versions":{versions}}}', self._page_headers(page, wanted)
        )

    async def _manifest(self, request: web.Request) -> web.Response:
        collection = self._collection_of(request)
        wanted = page_request(request.query, max_page=self._max_page)
        page = await self._read_page(collection, wanted, index.manifest_page)
        records = [
            {
                "id": r.object_id,
                "date_added": format_us(r.added_us),
                "version": r.version,
                "media_type": STIX_MEDIA_TYPE,
            }
            for r in page.rows
        ]
        body = f'{{{self._more(page)},"objects":{json.dumps(records)}}}'
        return _taxii(body, self._page_headers(page, wanted))

    # -- the MISP feed ------------------------------------------------------------------------

    async def _misp_index(self, _request: web.Request) -> web.StreamResponse:
        return await self._misp_send("manifest.json")

    async def _misp_file(self, request: web.Request) -> web.StreamResponse:
        return await self._misp_send(request.match_info["name"])

    async def _misp_send(self, name: str) -> web.StreamResponse:
        if self._misp_feed is None or not _MISP_FILE.fullmatch(name):
            raise TaxiiRefusal(404, "no such feed file", name)
        path = self._misp_feed / name
        if not path.is_file():
            raise TaxiiRefusal(404, "no such feed file", name)
        kind = "text/csv" if name.endswith(".csv") else "application/json"
        return web.FileResponse(path, headers={"Content-Type": kind})
