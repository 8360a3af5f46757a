"""The Braintrust-compatible REST API: the wire format, the HTTP store (``client``) and the
``evalrows serve`` server. Imports only ``core``, ``errors`` and ``store.base``."""
