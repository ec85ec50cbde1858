"""Avro schemas of the exchange, the wire codec, projection and originator signatures."""
