"""Enlace: interagency intelligence exchange on Apache Kafka."""

__version__ = "0.1.0"
