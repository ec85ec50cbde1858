"""The MISP vocabulary Enlace writes and reads: tag names, attribute types, fixed ids (pure).

Shared by the consumer's MISP feed sink (``consumers.misp_mapping``) and the producer's MISP
intake (``producers.misp_intake``), which may not import each other: what one writes, the
other reads, so a bulletin survives bulletin -> MISP event -> bulletin.

Tags follow MISP's machine-tag form ``namespace:predicate="value"``:

- TLP: the MISP ``tlp`` taxonomy, TLP 2.0 names (``tlp:clear``, ``tlp:green``,
  ``tlp:amber``, ``tlp:amber+strict``, ``tlp:red``); ``tlp:white`` (TLP 1.0) is read as CLEAR.
- Admiralty code: the MISP ``admiralty-scale`` taxonomy,
  ``admiralty-scale:source-reliability="a"`` .. ``"f"`` and
  ``admiralty-scale:information-credibility="1"`` .. ``"6"``. The installed pymisp ships no
  taxonomies; these are the predicate and value names of misp-taxonomies'
  ``admiralty-scale/machinetag.json``.
- Everything else Enlace needs and MISP has no taxonomy for: the ``enlace`` namespace, values
  lowercase (``enlace:category="drug_trafficking"``, ``enlace:classification="restricted"``).
  Every value comes from a closed vocabulary (or the agency/country registry), so the number
  of distinct tags a MISP instance creates stays small.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from schemas.vocab import EntityKind, IndicatorType, Severity, Tlp

# Fixed namespace of Enlace's deterministic MISP uuids (event, attributes, objects, Orgc).
MISP_NAMESPACE = uuid.UUID("8c1d4e0a-7b2f-5a3c-9d6e-0f1a2b3c4d5e")

ENLACE_NS = "enlace"
ADMIRALTY_NS = "admiralty-scale"
RELIABILITY = "source-reliability"
CREDIBILITY = "information-credibility"

# Event-level enlace predicates.
CATEGORY = "category"
SEVERITY = "severity"
CLASSIFICATION = "classification"
TEARLINE_CLASSIFICATION = "tearline-classification"
CAVEAT = "caveat"
RELEASABLE_TO = "releasable-to"
SOURCE_TYPE = "source-type"
LANGUAGE = "language"
RELEASE = "release"  # full | tearline: which copy the feed holds (informational)
ROUTE_MODE = "route-mode"
ROUTE_FROM = "route-from"
ROUTE_TO = "route-to"
ROUTE_VIA = "route-via"  # one tag per via country, in route order

# Attribute-level enlace predicates.
PART = "part"  # on ``text`` attributes: summary | details | seizure
ENTITY = "entity"  # the entity kind of an entity's attribute
ENTITY_COUNTRY = "entity-country"
IDENTIFIER_OF = "identifier-of"  # 1-based index of the entity among the entity attributes
INDICATOR = "indicator"  # "other": an Enlace OTHER indicator (MISP type ``other``)

PART_SUMMARY = "summary"
PART_DETAILS = "details"
PART_SEIZURE = "seizure"

TLP_TAGS: Mapping[Tlp, str] = {
    Tlp.CLEAR: "tlp:clear",
    Tlp.GREEN: "tlp:green",
    Tlp.AMBER: "tlp:amber",
    Tlp.AMBER_STRICT: "tlp:amber+strict",
    Tlp.RED: "tlp:red",
}
TLP_OF_TAG: Mapping[str, Tlp] = {
    **{tag: tlp for tlp, tag in TLP_TAGS.items()},
    "tlp:white": Tlp.CLEAR,  # TLP 1.0
}
TLP_COLOURS: Mapping[Tlp, str] = {
    Tlp.CLEAR: "#ffffff",
    Tlp.GREEN: "#339900",
    Tlp.AMBER: "#ffc000",
    Tlp.AMBER_STRICT: "#ffc000",
    Tlp.RED: "#cc0033",
}
TAG_COLOUR = "#0088cc"

# MISP distribution levels: 0 your organisation only, 1 this community only, 2 connected
# communities, 3 all communities, 4 sharing group, 5 inherit (attributes).
# TLP:CLEAR is public -> all communities; TLP:GREEN is for the recipient's community -> this
# community; AMBER, AMBER+STRICT and RED are for the recipient organisation -> your
# organisation only. MISP never re-shares a distribution-0 event through its own sync.
DISTRIBUTION: Mapping[Tlp, int] = {
    Tlp.CLEAR: 3,
    Tlp.GREEN: 1,
    Tlp.AMBER: 0,
    Tlp.AMBER_STRICT: 0,
    Tlp.RED: 0,
}
INHERIT_DISTRIBUTION = 5

# MISP threat levels: 1 high, 2 medium, 3 low, 4 undefined. MISP has no "critical": HIGH and
# CRITICAL are both 1, and the exact severity travels as ``enlace:severity``.
THREAT_LEVEL: Mapping[Severity, int] = {
    Severity.CRITICAL: 1,
    Severity.HIGH: 1,
    Severity.MEDIUM: 2,
    Severity.LOW: 3,
}
SEVERITY_OF_THREAT_LEVEL: Mapping[int, Severity] = {
    1: Severity.HIGH,
    2: Severity.MEDIUM,
    3: Severity.LOW,
}
ANALYSIS_COMPLETED = 2  # a bulletin is a finished report

# Indicators: (MISP type, category, to_ids). Crypto wallets: MISP has one type per coin;
# ``btc`` is the Bitcoin address type, ``xmr`` Monero's (chosen by the address's form).
INDICATOR_TYPES: Mapping[IndicatorType, tuple[str, str, bool]] = {
    IndicatorType.IPV4: ("ip-dst", "Network activity", True),
    IndicatorType.IPV6: ("ip-dst", "Network activity", True),
    IndicatorType.DOMAIN: ("domain", "Network activity", True),
    IndicatorType.URL: ("url", "Network activity", True),
    IndicatorType.EMAIL: ("email-src", "Payload delivery", True),
    IndicatorType.FILE_SHA256: ("sha256", "Payload delivery", True),
    IndicatorType.FILE_MD5: ("md5", "Payload delivery", True),
    IndicatorType.CRYPTO_WALLET: ("btc", "Financial fraud", True),
    IndicatorType.OTHER: ("other", "Other", False),
}
XMR = ("xmr", "Financial fraud", True)
_MONERO = re.compile(r"^[48][1-9A-HJ-NP-Za-km-z]{94}([1-9A-HJ-NP-Za-km-z]{11})?$")

# MISP types read back as indicators (``other`` only with ``enlace:indicator="other"``).
INDICATOR_OF_TYPE: Mapping[str, IndicatorType] = {
    "ip-dst": IndicatorType.IPV4,  # IPV6 when the value has a colon
    "ip-src": IndicatorType.IPV4,
    "domain": IndicatorType.DOMAIN,
    "hostname": IndicatorType.DOMAIN,
    "url": IndicatorType.URL,
    "uri": IndicatorType.URL,
    "email-src": IndicatorType.EMAIL,
    "email-dst": IndicatorType.EMAIL,
    "email": IndicatorType.EMAIL,
    "sha256": IndicatorType.FILE_SHA256,
    "md5": IndicatorType.FILE_MD5,
    "btc": IndicatorType.CRYPTO_WALLET,
    "xmr": IndicatorType.CRYPTO_WALLET,
    "dash": IndicatorType.CRYPTO_WALLET,
}

# Entities: (MISP type, category) of the attribute holding the entity's name.
ENTITY_TYPES: Mapping[EntityKind, tuple[str, str]] = {
    EntityKind.PERSON: ("full-name", "Person"),
    EntityKind.ORGANIZATION: ("text", "Attribution"),
    EntityKind.VESSEL: ("text", "Other"),
    EntityKind.AIRCRAFT: ("text", "Other"),
    EntityKind.VEHICLE: ("text", "Other"),
    EntityKind.PHONE: ("phone-number", "Person"),
    EntityKind.ACCOUNT: ("text", "Financial fraud"),
    EntityKind.OTHER: ("text", "Other"),
}
# An untagged attribute of these types, from any MISP, is still an entity.
ENTITY_OF_TYPE: Mapping[str, EntityKind] = {
    "full-name": EntityKind.PERSON,
    "phone-number": EntityKind.PHONE,
}
# Identifier schemes MISP has a type for; any other scheme is ``text`` (scheme in comment).
IDENTIFIER_TYPES: Mapping[str, tuple[str, str]] = {
    "passport": ("passport-number", "Person"),
    "national_id": ("identity-card-number", "Person"),
    "iban": ("iban", "Financial fraud"),
}

GEOLOCATION_TEMPLATE = ("geolocation", "cd6f2238-ba55-4888-82c4-104e6e1acf21", "8")

_MACHINE_TAG = re.compile(
    r'^([a-z0-9][a-z0-9_.+-]*):([a-z0-9][a-z0-9_.+-]*)="([^"]*)"$', re.IGNORECASE
)


def wallet_type(value: str) -> tuple[str, str, bool]:
    """The MISP type of a crypto wallet address: ``xmr`` for Monero's form, else ``btc``."""
    return XMR if _MONERO.fullmatch(value) else INDICATOR_TYPES[IndicatorType.CRYPTO_WALLET]


def machine_tag(namespace: str, predicate: str, value: str) -> str:
    return f'{namespace}:{predicate}="{value}"'


def enlace_tag(predicate: str, value: str) -> str:
    return machine_tag(ENLACE_NS, predicate, value)


def reliability_tag(letter: str) -> str:
    return machine_tag(ADMIRALTY_NS, RELIABILITY, letter.lower())


def credibility_tag(digit: str) -> str:
    return machine_tag(ADMIRALTY_NS, CREDIBILITY, digit)


def parse_machine_tag(name: str) -> tuple[str, str, str] | None:
    """``(namespace, predicate, value)`` of a machine tag, or None. Namespace and predicate
    are lowercased (MISP matches tags case-insensitively); the value keeps its case
    (``es-PA``, ``PA``)."""
    match = _MACHINE_TAG.fullmatch(name.strip())
    if match is None:
        return None
    return match.group(1).lower(), match.group(2).lower(), match.group(3)


def misp_uuid(*parts: str) -> str:
    """A deterministic uuid (v5) in Enlace's MISP namespace."""
    return str(uuid.uuid5(MISP_NAMESPACE, "|".join(parts)))


def event_uuid(bulletin_id: str) -> str:
    return misp_uuid("event", bulletin_id)


def org_uuid(agency: str) -> str:
    return misp_uuid("agency", agency)
