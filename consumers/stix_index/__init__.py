"""The STIX objects of a partner's stored bulletins, kept by the store for its TAXII server.

``index`` writes (inside the store's transaction) and reads pages; ``collections`` names what
a client can ask for; ``timestamps`` is TAXII's time as integer microseconds.
"""
