"""The one exception tree of Enlace.

Every error a caller can act on derives from :class:`EnlaceError`; vendor exceptions
(aiokafka, fastavro, PyNaCl, OS) are converted where they enter, ``raise X(...) from exc``.
Control signals (stop requests, shutdown) are not errors and do not live here.

::

    EnlaceError
    ├── ConfigError                  settings, policy, registry or key directory is invalid
    │   └── RegistryError            unknown agency, malformed agency id
    ├── EnvironmentProblem           the machine lacks something (Java, Maven, a free port)
    ├── BrokerError                  talking to Kafka failed
    │   ├── KafkaUnavailable         no broker answered within the deadline
    │   ├── KafkaLaunchError         the local launcher could not start / stop Kafka
    │   └── DeliveryError            a record was not acknowledged (broker refusal)
    │       └── DeliveryTimeout      ... within our deadline (it may still land: re-send)
    ├── CodecError                   bytes on the wire are not a bulletin we can read
    │   ├── BadMagic                 not Avro single-object encoding
    │   ├── UnknownFingerprint       writer schema not in the catalog
    │   ├── TruncatedRecord          body ends early / declared length exceeds the bytes
    │   ├── CorruptRecord            body does not decode under the writer schema
    │   ├── RecordTooLarge           over the configured size bound
    │   └── HeaderError              provenance headers missing, repeated or malformed
    ├── ValidationError              a bulletin or event breaks a rule Avro cannot express
    ├── SignatureError               origin proof failed
    │   ├── UnknownKey               key id not in the directory
    │   ├── KeyNotOfAgency           key belongs to another agency
    │   ├── RevokedKey               key revoked or outside its validity window
    │   ├── BadSignature             signature does not match the bytes
    │   └── UnsealError              a sealed body or wrapped key does not open (wire format 2)
    ├── BulletinRefused              the publisher did not send: the exchange would not admit it
    │   └── ClockSkewRefused         its time is outside the admission window (``reason``)
    ├── PolicyError                  trust policy file is invalid (also a ConfigError)
    ├── SinkError                    a consumer sink could not store a bulletin
    ├── TaxiiRefusal                 a TAXII request is answered with an error (``http_status``)
    └── NotStarted                   a component was used before start() (a caller's bug)
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class EnlaceError(Exception):
    """Root of every error Enlace raises on purpose."""


class ConfigError(EnlaceError):
    """Settings, policy, registry or key directory is invalid."""


class RegistryError(ConfigError):
    """Unknown agency or malformed agency id."""


class EnvironmentProblem(EnlaceError):
    """The machine lacks something Enlace needs; the message says what to install or free."""


class BrokerError(EnlaceError):
    """Talking to Kafka failed."""


class KafkaUnavailable(BrokerError):
    """No broker answered within the deadline."""


class KafkaLaunchError(BrokerError):
    """The local launcher could not start or stop Kafka."""


class DeliveryError(BrokerError):
    """A record was not acknowledged by the broker."""


class DeliveryTimeout(DeliveryError):
    """A record was not acknowledged within our deadline; it may still be delivered."""


class CodecError(EnlaceError):
    """Bytes on the wire are not a record we can read. ``reason`` is a stable code."""

    reason = "undecodable"


class BadMagic(CodecError):
    reason = "bad_magic"


class UnknownFingerprint(CodecError):
    reason = "unknown_fingerprint"


class TruncatedRecord(CodecError):
    reason = "truncated"


class CorruptRecord(CodecError):
    reason = "corrupt"


class RecordTooLarge(CodecError):
    reason = "oversize"


class HeaderError(CodecError):
    reason = "bad_header"


class ValidationError(EnlaceError):
    """A bulletin or trust event breaks a rule; ``problems`` lists (field, rule) for humans."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class SignatureError(EnlaceError):
    """Origin proof failed. ``reason`` is a stable code."""

    reason = "bad_signature"


class UnknownKey(SignatureError):
    reason = "unknown_key"


class KeyNotOfAgency(SignatureError):
    reason = "key_not_of_agency"


class RevokedKey(SignatureError):
    reason = "revoked_key"


class BadSignature(SignatureError):
    reason = "bad_signature"


class UnsealError(SignatureError):
    """A sealed body or a wrapped key does not open: tampered, bound to another envelope or
    level, or meant for another agency. A proof failure, like a bad signature."""

    reason = "unsealable"


class BulletinRefused(EnlaceError):
    """The publisher refused a bulletin the exchange would not admit (the router would
    dead-letter it, or the broker refused its record). Re-sending it unchanged cannot help;
    ``reason`` is a stable code."""

    reason = "refused"


class ClockSkewRefused(BulletinRefused):
    """A bulletin's time is outside the exchange's admission window. ``reason``:
    ``issued_in_future`` / ``issued_too_old`` (its ``issued_at`` against the publisher's clock,
    refused before sending) or ``clock_off`` (the broker refused the record's timestamp,
    ``INVALID_TIMESTAMP``: the publisher's own clock is off by more than the window)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class PolicyError(ConfigError):
    """The trust policy file is invalid."""


class SinkError(EnlaceError):
    """A consumer sink could not store a bulletin."""


class TaxiiRefusal(EnlaceError):
    """A TAXII request the server refuses; ``http_status`` is what the spec says to answer."""

    def __init__(self, http_status: int, title: str, description: str = "") -> None:
        super().__init__(f"{http_status} {title}" + (f": {description}" if description else ""))
        self.http_status = http_status
        self.title = title
        self.description = description


class NotStarted(EnlaceError):
    """A component was used before ``start()`` (or after ``stop()``)."""


def started(resource: T | None, what: str) -> T:
    """``resource`` (a client a component opens in ``start()``), or :class:`NotStarted`."""
    if resource is None:
        raise NotStarted(f"{what} used before start()")
    return resource
