"""Getting rows to a store: the spool file, the writer thread and the batch -> write -> ack
path. Imports only ``core``, ``errors`` and ``store.base``."""
