"""The Kafka versions the Strimzi operator this project targets supports, copied from its
``kafka-versions.yaml`` (Strimzi 1.3.0-SNAPSHOT, commit 8541da1e; the entries marked
``supported: true``). ``../shared/strimzi/`` is not shipped, so the list lives here and
tests/unit/test_strimzi_manifests.py holds it equal to that file.
"""

from __future__ import annotations

from enlace.core.errors import ConfigError

SUPPORTED_KAFKA_VERSIONS: tuple[str, ...] = ("4.2.0", "4.2.1", "4.3.0", "4.3.1")

# Strimzi's own default (``default: true``), the newest it supports and the closest to the
# Kafka 4.4.0 that deploy/localkafka.py runs (4.4.0 itself is not supported by Strimzi).
DEFAULT_KAFKA_VERSION = "4.3.1"


def check_kafka_version(version: str) -> str:
    """The version, or a ConfigError naming the versions the operator supports."""
    if version not in SUPPORTED_KAFKA_VERSIONS:
        raise ConfigError(
            f"Strimzi does not support Kafka {version}; "
            f"supported: {', '.join(SUPPORTED_KAFKA_VERSIONS)}"
        )
    return version
