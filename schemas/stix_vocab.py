"""The STIX 2.1 vocabulary both directions share: the consumers' mapping (bulletin → bundle)
and the producers' intake (bundle → bulletin).

Here, in the schemas layer, because services must not import each other (import-linter): the
label prefixes, TLP marking ids, Admiralty scales, pattern paths and the id namespace have
to be the same on both sides or a round trip silently loses fields.

Tables whose source is outside this repository are copied as data and held to their source
by tests: ``STIX_LANG_CODES`` is the OASIS validator's ``LANG_CODES`` (it refuses any other
``lang``, region-less BCP 47 tags like ``es-419`` included); ``COUNTRY_REGION`` is UN M49
(the ``region-ov`` vocabulary of STIX 2.1 is M49's names).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from schemas.vocab import IndicatorType, InfoCredibility, SourceReliability, Tlp

# Fixed namespace for Enlace's deterministic STIX ids (UUIDv5).
ENLACE_STIX_NAMESPACE = uuid.UUID("5f0c3a7e-2b1d-4c8e-9a6f-3d2e1b0c9a87")
# The external reference that names the bulletin a report is (and the agency an identity is).
ENLACE_SOURCE = "enlace"

TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_CREATED = "2022-10-01T00:00:00.000Z"
# Official STIX 2.1 marking-definition ids of TLP 2.0 (OASIS cti-stix-common-objects).
TLP2_MARKING_IDS: Mapping[Tlp, str] = {
    Tlp.CLEAR: "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    Tlp.GREEN: "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    Tlp.AMBER: "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    Tlp.AMBER_STRICT: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    Tlp.RED: "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
# TLP 1.0 ids of the STIX 2.1 specification (7.2.1.4); OpenCTI still exports these for
# WHITE/GREEN/AMBER/RED. Read by the intake only: WHITE is TLP 2.0's CLEAR.
TLP1_MARKING_IDS: Mapping[str, Tlp] = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": Tlp.CLEAR,
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": Tlp.GREEN,
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": Tlp.AMBER,
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": Tlp.RED,
}
# The ``tlp_2_0`` value of the extension, also the lowercase name after "TLP:".
TLP2_LEVEL: Mapping[Tlp, str] = {
    Tlp.CLEAR: "clear",
    Tlp.GREEN: "green",
    Tlp.AMBER: "amber",
    Tlp.AMBER_STRICT: "amber+strict",
    Tlp.RED: "red",
}
TLP_BY_LEVEL: Mapping[str, Tlp] = {
    **{level: tlp for tlp, level in TLP2_LEVEL.items()},
    "white": Tlp.CLEAR,
}

# STIX 2.1 Appendix B, Admiralty information credibility → confidence (6: no confidence).
ADMIRALTY_CONFIDENCE: Mapping[InfoCredibility, int | None] = {
    InfoCredibility.C1: 90,
    InfoCredibility.C2: 70,
    InfoCredibility.C3: 50,
    InfoCredibility.C4: 30,
    InfoCredibility.C5: 10,
    InfoCredibility.C6: None,
}


def credibility_of(confidence: int | None) -> InfoCredibility:
    """The Admiralty credibility of a STIX confidence: Appendix B's ranges (80-100 → 1,
    60-79 → 2, 40-59 → 3, 20-39 → 4, 0-19 → 5); absent → 6, "cannot be judged"."""
    if confidence is None:
        return InfoCredibility.C6
    for floor, credibility in ((80, "C1"), (60, "C2"), (40, "C3"), (20, "C4")):
        if confidence >= floor:
            return InfoCredibility(credibility)
    return InfoCredibility.C5


# OpenCTI's custom properties, read by OpenCTI before its own extension. It types a location
# by its properties, ``country`` first, unless told: a place would become a Country.
OPENCTI_LOCATION_TYPE = "x_opencti_location_type"
OPENCTI_RELIABILITY_PROPERTY = "x_opencti_reliability"

# OpenCTI's reliability vocabulary (``x_opencti_reliability``, the Admiralty source scale).
OPENCTI_RELIABILITY: Mapping[SourceReliability, str] = {
    SourceReliability.A: "A - Completely reliable",
    SourceReliability.B: "B - Usually reliable",
    SourceReliability.C: "C - Fairly reliable",
    SourceReliability.D: "D - Not usually reliable",
    SourceReliability.E: "E - Unreliable",
    SourceReliability.F: "F - Reliability cannot be judged",
}

# Object paths of the STIX patterns; CRYPTO_WALLET follows OpenCTI's custom observable.
PATTERN_PATHS: Mapping[IndicatorType, str] = {
    IndicatorType.IPV4: "ipv4-addr:value",
    IndicatorType.IPV6: "ipv6-addr:value",
    IndicatorType.DOMAIN: "domain-name:value",
    IndicatorType.URL: "url:value",
    IndicatorType.EMAIL: "email-addr:value",
    IndicatorType.FILE_SHA256: "file:hashes.'SHA-256'",
    IndicatorType.FILE_MD5: "file:hashes.MD5",
    IndicatorType.CRYPTO_WALLET: "cryptocurrency-wallet:value",
}

_PATTERN = re.compile(r"\[\s*([a-z0-9-]+:[A-Za-z0-9_.'-]+)\s*=\s*'((?:[^'\\]|\\.)*)'\s*\]")
_PATHS = {path.replace("'", ""): kind for kind, path in PATTERN_PATHS.items()}


def parse_pattern(pattern: str) -> tuple[IndicatorType, str] | None:
    """``(type, value)`` of a pattern that compares one known path to one value (the form
    the consumers' mapping writes; hash names quoted or not), else None."""
    match = _PATTERN.fullmatch(pattern.strip())
    path = None if match is None else match.group(1).replace("'", "")
    if match is None or path not in _PATHS:
        return None
    return _PATHS[path], re.sub(r"\\(.)", r"\1", match.group(2))


def tlp_of_marking(ref: str, marking: Mapping[str, Any] | None) -> Tlp | None:
    """The TLP a marking reference names: by official id (2.0, or 1.0 as OpenCTI exports),
    else by what its object says (the TLP 2.0 extension, a 1.0 ``definition``, its name)."""
    for tlp, known in TLP2_MARKING_IDS.items():
        if ref == known:
            return tlp
    if ref in TLP1_MARKING_IDS:
        return TLP1_MARKING_IDS[ref]
    marking = marking or {}
    extensions = marking.get("extensions")
    ext = extensions.get(TLP2_EXTENSION) if isinstance(extensions, Mapping) else None
    definition = marking.get("definition")
    for value in (
        ext.get("tlp_2_0") if isinstance(ext, Mapping) else None,
        definition.get("tlp") if isinstance(definition, Mapping) else None,
        marking.get("name"),
    ):
        if isinstance(value, str):
            level = value.strip().lower().removeprefix("tlp:")
            if level in TLP_BY_LEVEL:
                return TLP_BY_LEVEL[level]
    return None


# Report labels ``<prefix>:<value>``: the bulletin fields STIX has no property for. Values
# are the lowercase enum symbols (``category:drug_trafficking``), except ``admiralty``
# (``B2``: reliability and credibility as analysts write it), countries (``CO``), agency
# ids (``cr-msp``) and language tags (as given).
LABEL_CATEGORY = "category"
LABEL_SEVERITY = "severity"
LABEL_CLASSIFICATION = "classification"
LABEL_TEARLINE = "tearline-classification"
LABEL_ADMIRALTY = "admiralty"
LABEL_SOURCE_TYPE = "source-type"
LABEL_RELEASE = "release"
LABEL_CAVEAT = "caveat"
LABEL_RELEASABLE_TO = "releasable-to"
LABEL_LANGUAGE = "language"  # only when ``lang`` could not carry the exact tag
LABEL_LOCATION = "location"  # the bulletin's location's country (the place has no role in STIX)
LABEL_ROUTE_MODE = "route-mode"
LABEL_ROUTE_FROM = "route-from"
LABEL_ROUTE_TO = "route-to"
LABEL_ROUTE_VIA = "route-via"  # one per via country, in order


def label(prefix: str, value: str) -> str:
    return f"{prefix}:{value}"


def split_label(text: str) -> tuple[str, str] | None:
    """``(prefix, value)`` of an Enlace label (prefix lowercased), or None for other labels."""
    prefix, sep, value = text.partition(":")
    if not sep or not value:
        return None
    return prefix.strip().lower(), value.strip()


# The OASIS stix2-validator's LANG_CODES (3.3.2, v21/enums.py): ``lang`` outside it is an
# error. tests/unit/test_stix_validator.py checks this copy against the installed validator.
_LANG_CODES = """
    af af-ZA ar ar-AE ar-BH ar-DZ ar-EG ar-IQ ar-JO ar-KW ar-LB ar-LY ar-MA ar-OM ar-QA ar-SA
    ar-SY ar-TN ar-YE az az-AZ az-Cyrl-AZ be be-BY bg bg-BG bs-BA ca ca-ES cs cs-CZ cy cy-GB
    da da-DK de de-AT de-CH de-DE de-LI de-LU dv dv-MV el el-GR en en-AU en-BZ en-CA en-CB
    en-GB en-IE en-JM en-NZ en-PH en-TT en-US en-ZA en-ZW eo es es-AR es-BO es-CL es-CO es-CR
    es-DO es-EC es-ES es-GT es-HN es-MX es-NI es-PA es-PE es-PR es-PY es-SV es-UY es-VE et
    et-EE eu eu-ES fa fa-IR fi fi-FI fo fo-FO fr fr-BE fr-CA fr-CH fr-FR fr-LU fr-MC gl gl-ES
    gu gu-IN he he-IL hi hi-IN hr hr-BA hr-HR hu hu-HU hy hy-AM id id-ID is is-IS it it-CH
    it-IT ja ja-JP ka ka-GE kk kk-KZ kn kn-IN ko ko-KR kok kok-IN ky ky-KG lt lt-LT lv lv-LV
    mi mi-NZ mk mk-MK mn mn-MN mr mr-IN ms ms-BN ms-MY mt mt-MT nb nb-NO nl nl-BE nl-NL nn-NO
    ns ns-ZA pa pa-IN pl pl-PL ps ps-AR pt pt-BR pt-PT qu qu-BO qu-EC qu-PE ro ro-RO ru ru-RU
    sa sa-IN se se-FI se-NO se-SE sk sk-SK sl sl-SI sq sq-AL sr-BA sr-Cyrl-BA sr-SP
    sr-Cyrl-SP sv sv-FI sv-SE sw sw-KE syr syr-SY ta ta-IN te te-IN th th-TH tl tl-PH tn
    tn-ZA tr tr-TR tt tt-RU ts uk uk-UA ur ur-PK uz uz-UZ uz-Cyrl-UZ vi vi-VN xh xh-ZA zh
    zh-CN zh-HK zh-MO zh-SG zh-TW zu zu-ZA
"""
STIX_LANG_CODES: frozenset[str] = frozenset(_LANG_CODES.split())
_LANG_BY_FOLDED = {code.lower(): code for code in STIX_LANG_CODES}


def stix_lang(tag: str) -> str | None:
    """The ``lang`` for a bulletin's BCP 47 tag: the tag itself if the validator lists it
    (case-insensitively, BCP 47 tags are), else its primary language (``es-419`` → ``es``,
    ``fr-HT`` → ``fr``), else None: no ``lang`` at all (``ht``, ``gn``: not on the list)."""
    exact = _LANG_BY_FOLDED.get(tag.lower())
    if exact is not None:
        return exact
    return _LANG_BY_FOLDED.get(tag.split("-", 1)[0].lower())


# UN M49 (region-ov): the Americas by sub-region, the rest by continent. Sub-regions matter
# where the exchange works; elsewhere a continent is right and cheaper to keep right.
_REGIONS = {
    "caribbean": "AG AI AW BB BL BQ BS CU CW DM DO GD GP HT JM KN KY LC MF MQ MS PR SX TC TT "
    "VC VG VI",
    "central-america": "BZ CR GT HN MX NI PA SV",
    "south-america": "AR BO BR BV CL CO EC FK GF GS GY PE PY SR UY VE",
    "northern-america": "BM CA GL PM US",
    "africa": "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW IO KE KM "
    "LR LS LY MA MG ML MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TF TG TN TZ "
    "UG YT ZA ZM ZW",
    "asia": "AE AF AM AZ BD BH BN BT CN CY GE HK ID IL IN IQ IR JO JP KG KH KP KR KW KZ LA LB "
    "LK MM MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TL TM TR TW UZ VN YE",
    "europe": "AD AL AT AX BA BE BG BY CH CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS "
    "IT JE LI LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA",
    "oceania": "AS AU CC CK CX FJ FM GU HM KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV UM "
    "VU WF WS",
    "antarctica": "AQ",
}
COUNTRY_REGION: Mapping[str, str] = {
    country: region for region, codes in _REGIONS.items() for country in codes.split()
}


def region_of(country: str) -> str | None:
    """The STIX ``region`` of an ISO 3166-1 country (every assigned code has one)."""
    return COUNTRY_REGION.get(country)
