"""A TAXII 2.1 server over a partner's store, for OpenCTI and any TAXII 2.1 client.

The objects it serves are the store's STIX index (:mod:`consumers.stix_index`). ``params``
reads a request's filters; ``server`` is the HTTP face (auth, media types, errors, pages);
``reader`` runs store reads off the event loop; ``settings``, ``service`` and ``cli`` run it
standalone (``enlace taxii serve``) or beside the consumer (``enlace consumer run --taxii``).
"""
