"""Wire protocol version 1: the CPython reference of docs/protocol.md."""

PROTOCOL_VERSION = 1
