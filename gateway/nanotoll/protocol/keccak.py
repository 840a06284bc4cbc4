"""keccak-256, the hash of every digest, address and request hash in the protocol.

safe-pysha3's C ``sha3.keccak_256`` is the pinned dependency: called once per hash it
costs a fraction of eth-hash's pycryptodome binding (docs/benchmarks.md), and every
purchase hashes many times. eth_utils stands in only where safe-pysha3 is not installed.
"""

from __future__ import annotations

try:
    from sha3 import keccak_256 as _keccak_256  # type: ignore[import-untyped]

    def keccak256(data: bytes) -> bytes:
        return _keccak_256(data).digest()  # type: ignore[no-any-return]

except ImportError:  # pragma: no cover - the dependency is pinned; this keeps it optional
    from eth_utils import keccak as _eth_keccak

    def keccak256(data: bytes) -> bytes:
        return bytes(_eth_keccak(data))


__all__ = ["keccak256"]
