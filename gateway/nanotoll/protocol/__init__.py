"""Wire protocol version 1: the CPython implementation of docs/protocol.md.

One implementation, used by the gateway, the tools, the benches and the tests alike; where
the gateway's per-request work needs speed, the narrow path lives inside the module it
speeds up and is tested equal to the generic one (tests/protocol/test_fast_paths.py).

``keccak`` the hash; ``cbor`` strict deterministic CBOR; ``eip712`` the typed-data
digests; ``signing`` keys, signatures and recovery; ``voucher`` the 76-byte voucher;
``messages`` requests, responses, receipts and catalogs; ``topics`` the MQTT topics;
``errors`` the error codes.
"""

PROTOCOL_VERSION = 1
