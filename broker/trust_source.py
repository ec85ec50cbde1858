"""Trust history from a JSONL file: one trust event or one release record per line.

A trust event line has the TrustEvent fields (``event_id``, ``kind``, ``reporter``,
``subject``, ``bulletin_id``, ``occurred_at``, ``note``) and may add ``released_at`` (when the
originator released that bulletin to the reporter) so a receipt is judged on time or late.
A release line reads ``{"record": "release", "originator": ..., "partner": ...,
"released_at": ..., "bulletin_id": ...}``: it counts for reciprocity and, with a bulletin id,
a missing receipt is counted once the deadline passes. The router feeds the same records live.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from broker.ledger import ObservedEvent, ObservedRelease
from enlace.core.errors import ValidationError
from enlace.core.registry import check_agency_id
from schemas.vocab import ReleaseKind, TrustEventKind

AgencyId = Annotated[str, AfterValidator(check_agency_id)]


class _EventLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str | None = Field(None, max_length=64)
    kind: TrustEventKind
    reporter: AgencyId
    subject: AgencyId
    bulletin_id: str | None = Field(None, max_length=64)
    occurred_at: AwareDatetime
    note: str | None = Field(None, max_length=2000)
    released_at: AwareDatetime | None = None


class _ReleaseLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    record: Literal["release"]
    originator: AgencyId
    partner: AgencyId
    released_at: AwareDatetime
    bulletin_id: str | None = Field(None, max_length=64)
    kind: ReleaseKind | None = None


def parse_record(obj: object) -> ObservedEvent | ObservedRelease:
    """One decoded JSON line as a record; raises pydantic's ValidationError when malformed."""
    if isinstance(obj, dict) and "record" in obj:
        r = _ReleaseLine.model_validate(obj)
        return ObservedRelease(r.originator, r.partner, r.released_at, r.bulletin_id)
    e = _EventLine.model_validate(obj)
    return ObservedEvent(e.kind, e.reporter, e.subject, e.occurred_at, e.bulletin_id, e.released_at)


def read_records(path: Path) -> list[ObservedEvent | ObservedRelease]:
    """Every record of a JSONL file (blank lines skipped), or one error naming the line."""
    records: list[ObservedEvent | ObservedRelease] = []
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(parse_record(json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ValidationError(f"{path}:{number}: not JSON: {exc.msg}") from exc
                except PydanticValidationError as exc:
                    problems = [
                        (".".join(str(p) for p in err["loc"]), err["msg"]) for err in exc.errors()
                    ]
                    shown = "; ".join(f"{field}: {rule}" for field, rule in problems)
                    raise ValidationError(f"{path}:{number}: {shown}", problems) from exc
    except OSError as exc:
        raise ValidationError(f"cannot read trust events {path}: {exc}") from exc
    return records
