"""A TAXII 2.1 request's query parameters as an index filter (pure).

``added_after``, ``limit``, ``next`` and ``match[id|type|version|spec_version]`` (TAXII 2.1
3.4-3.6); anything else is ignored, as the spec asks of servers. A malformed value is a 400
that names the parameter. ``next`` is opaque to clients: the ``date_added`` of the last
object a page returned, so the following page is a keyset read that costs the same at any
depth (and stays right while objects are added behind it).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from consumers.stix_index.index import ObjectFilter, VersionMatch
from consumers.stix_index.timestamps import parse_us
from enlace.core.errors import TaxiiRefusal

DEFAULT_PAGE = 1000
_TYPE = re.compile(r"[a-z0-9][a-z0-9-]{1,248}[a-z0-9]", re.ASCII)
_ID = re.compile(r"[a-z0-9][a-z0-9-]*--[0-9a-fA-F-]{36}", re.ASCII)
_SPEC = re.compile(r"\d+\.\d+", re.ASCII)
_NEXT_PREFIX = "a1."


@dataclass(frozen=True)
class PageRequest:
    filter: ObjectFilter
    limit: int
    after_us: int | None  # the cursor ``next`` carries


def _bad(parameter: str, why: str) -> TaxiiRefusal:
    return TaxiiRefusal(400, "invalid query parameter", f"{parameter}: {why}")


def _list(query: Mapping[str, str], name: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    raw = query.get(name)
    if raw is None:
        return ()
    values = tuple(v.strip() for v in raw.split(","))
    for value in values:
        if not pattern.fullmatch(value):
            raise _bad(name, f"{value!r} is not a valid value")
    return values


def _versions(query: Mapping[str, str]) -> VersionMatch:
    raw = query.get("match[version]")
    if raw is None:
        return VersionMatch()
    latest = first = every = False
    exact: list[int] = []
    for value in (v.strip() for v in raw.split(",")):
        if value == "last":
            latest = True
        elif value == "first":
            first = True
        elif value == "all":
            every = True
        else:
            try:
                exact.append(parse_us(value))
            except ValueError as exc:
                raise _bad(
                    "match[version]", f"{value!r}: use last, first, all or a timestamp"
                ) from exc
    return VersionMatch(latest=latest, first=first, every=every, exact_us=tuple(exact))


def encode_next(added_us: int) -> str:
    token = base64.urlsafe_b64encode(str(added_us).encode("ascii")).decode("ascii")
    return _NEXT_PREFIX + token.rstrip("=")


def decode_next(token: str) -> int:
    if not token.startswith(_NEXT_PREFIX):
        raise _bad("next", "not a token this server issued")
    body = token[len(_NEXT_PREFIX) :]
    try:
        text = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
        value = int(text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _bad("next", "not a token this server issued") from exc
    if value < 0:
        raise _bad("next", "not a token this server issued")
    return value


def page_request(
    query: Mapping[str, str], *, max_page: int, object_id: str | None = None, versions: bool = False
) -> PageRequest:
    """The filter, page size and cursor of a request. ``object_id``: the object endpoints
    (``match[id]``/``match[type]`` do not apply); ``versions``: the versions endpoint
    (every version, ``match[version]`` does not apply)."""
    added_after = None
    if "added_after" in query:
        try:
            added_after = parse_us(query["added_after"].strip())
        except ValueError as exc:
            raise _bad("added_after", str(exc)) from exc
    limit = max_page
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError as exc:
            raise _bad("limit", "must be a positive integer") from exc
        if limit < 1:
            raise _bad("limit", "must be a positive integer")
        limit = min(limit, max_page)
    after_us = decode_next(query["next"]) if "next" in query else None
    if object_id is not None:
        ids: tuple[str, ...] = (object_id,)
        types: tuple[str, ...] = ()
    else:
        ids = _list(query, "match[id]", _ID)
        types = _list(query, "match[type]", _TYPE)
    match = VersionMatch(latest=False, every=True) if versions else _versions(query)
    flt = ObjectFilter(
        added_after_us=added_after,
        ids=ids,
        types=types,
        versions=match,
        spec_versions=_list(query, "match[spec_version]", _SPEC),
    )
    return PageRequest(filter=flt, limit=limit, after_us=after_us)
