"""The Enlace benchmark harness (``python -m bench``, ``make bench``).

One bounded run against the configured Kafka measures, with the same sealed bulletin payload:
raw Kafka produce → consume, a transactional copy with the router's engine and no logic,
the Publisher alone, and publish → router → feed end to end (each at a fixed offered rate for
latency and flat out for throughput), plus per-bulletin CPU costs of the codec, signing and
the router's logic. It prints a Markdown report and writes JSON under ``bench/results/``.

``python -m bench --flood`` runs only the flood phase (:mod:`bench.flood`): publish → feed
latency and the router's memory before and while one partner floods its receipts topic with
correctly signed junk trust events, and what the router made of them.
"""
