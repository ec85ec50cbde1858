"""Sinks by URI: ``sqlite:PATH``, ``jsonl:PATH``, ``stix:DIR``, ``misp:DIR``, ``webhook:URL``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from consumers.sinks.base import Sink, WriteResult
from consumers.sinks.jsonl import JsonlSink
from consumers.sinks.misp import MispFeedSink
from consumers.sinks.sqlite import SqliteSink
from consumers.sinks.stix import StixSink
from consumers.sinks.webhook import WebhookSink
from enlace.core.errors import ConfigError

SINK_KINDS = ("sqlite", "jsonl", "stix", "misp", "webhook")


@dataclass(frozen=True)
class SinkSpec:
    kind: str
    target: str

    @property
    def uri(self) -> str:
        return f"{self.kind}:{self.target}"


def parse_sink_uri(uri: str) -> SinkSpec:
    """``kind:target``; ConfigError names what is wrong."""
    kind, sep, target = uri.strip().partition(":")
    if not sep or kind not in SINK_KINDS:
        raise ConfigError(
            f"sink {uri!r} must be one of {', '.join(k + ':...' for k in SINK_KINDS)}"
        )
    if not target:
        raise ConfigError(f"sink {uri!r} names no {'URL' if kind == 'webhook' else 'path'}")
    if kind == "webhook" and not target.startswith(("http://", "https://")):
        raise ConfigError(f"webhook sink {uri!r} must be webhook:http(s)://...")
    if kind != "webhook" and "\x00" in target:
        raise ConfigError(f"sink {uri!r} has a NUL byte in its path")
    return SinkSpec(kind, target)


def parse_sink_uris(uris: Sequence[str]) -> list[SinkSpec]:
    """Parse every URI; the same sink twice is refused (it would double-write)."""
    specs = [parse_sink_uri(u) for u in uris]
    seen: set[SinkSpec] = set()
    for spec in specs:
        if spec in seen:
            raise ConfigError(f"sink {spec.uri!r} is given twice")
        seen.add(spec)
    return specs


def build_sink(
    spec: SinkSpec,
    *,
    agency_names: Mapping[str, str] | None = None,
    webhook_buffer: int = 1000,
    webhook_timeout_s: float = 10.0,
    webhook_max_backoff_s: float = 30.0,
    on_webhook_error: Callable[[], None] | None = None,
) -> Sink:
    if spec.kind == "sqlite":
        return SqliteSink(spec.target, agency_names=agency_names)
    if spec.kind == "jsonl":
        return JsonlSink(spec.target)
    if spec.kind == "stix":
        return StixSink(spec.target, agency_names=agency_names)
    if spec.kind == "misp":
        return MispFeedSink(spec.target, agency_names=agency_names)
    return WebhookSink(
        spec.target,
        buffer=webhook_buffer,
        timeout_s=webhook_timeout_s,
        max_backoff_s=webhook_max_backoff_s,
        on_error=on_webhook_error,
    )


__all__ = [
    "SINK_KINDS",
    "JsonlSink",
    "MispFeedSink",
    "Sink",
    "SinkSpec",
    "SqliteSink",
    "StixSink",
    "WebhookSink",
    "WriteResult",
    "build_sink",
    "parse_sink_uri",
    "parse_sink_uris",
]
