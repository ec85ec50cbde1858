"""The core layer: errors, settings, logging, the agency registry, Kafka clients and the one
place that names topics, groups and transactional ids. It imports nothing else of Enlace."""
