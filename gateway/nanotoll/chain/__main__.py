"""``python -m nanotoll.chain``: rebuild the contracts and rewrite the shipped ABIs."""

from __future__ import annotations

from .artifacts import write_shipped_abis

if __name__ == "__main__":
    for path in write_shipped_abis():
        print(path)
