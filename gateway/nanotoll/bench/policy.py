"""``nanotoll bench policy``: what applying an owner-signed policy costs the emulated
Cortex-M3 board (QEMU mps2-an385, ``-icount shift=0``), flashed as a device is.

- ``instructions_policy_apply``: one accepted policy (strict decode, the owner's
  signature recovered and compared, the checks, the signed bytes written to littlefs and
  renamed into place), the median of the rounds after a first one that builds the curve
  tables;
- ``instructions_policy_refused``: a policy signed by another key, refused at the
  signature (nothing written);
- ``heap_bytes_allocated_policy_apply``: heap one accepted apply allocates in all, the
  collector off (the big-integer work of recovering the signature, mostly garbage).

Every run sends the same bytes: fixed keys, chain and escrow.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..protocol.eip712 import domain_separator
from ..protocol.policy import SpendingPolicy
from ..protocol.signing import address_of

TICK_INSTRUCTIONS = 40  # CMSDK timer at 25 MHz against -icount shift=0 (1 GHz)
OWNER_KEY = bytes.fromhex("33" * 32)
STRANGER_KEY = bytes.fromhex("44" * 32)
CHAIN_ID = 31337
ESCROW = "0x95c62b7bca32875bad1194eb8c6a158277366fd9"
CHANNEL = 9
ROUNDS = 5

_MEASURE = """
import gc, json, machine, os
from binascii import unhexlify
import owner_policy, secp256k1
secp256k1.use_table("/rom/g.tbl", rebuild=False)  # G's comb table in flash, as on a device
_T = const(0x40000000)
_m32 = machine.mem32
_m32[_T] = 0
_m32[_T + 8] = 0xFFFFFFFF
_m32[_T + 4] = 0xFFFFFFFF
_m32[_T] = 1
def _now():
    return _m32[_T + 4] & 0xFFFFFFFF
try:
    os.mkdir("/bench-policy")
except OSError:
    pass
_k = owner_policy.OwnerPolicy("/bench-policy", unhexlify(%(owner)r), %(channel)d,
                              unhexlify(%(separator)r))
_policies = [unhexlify(p) for p in %(policies)r]
_stranger = unhexlify(%(stranger)r)
_out = {"apply": [], "refused": [], "heap": []}
for _p in _policies:
    gc.collect()
    gc.disable()
    _f0 = gc.mem_free()
    _t0 = _now()
    _k.apply(_p, 0)
    _t1 = _now()
    _f1 = gc.mem_free()
    gc.enable()
    _out["apply"].append((_t0 - _t1) & 0xFFFFFFFF)
    _out["heap"].append(_f0 - _f1)
    gc.collect()
    _t0 = _now()
    try:
        _k.apply(_stranger, 0)
    except owner_policy.PolicyRefused as _e:
        if _e.reason != "signature":
            raise
    _out["refused"].append((_t0 - _now()) & 0xFFFFFFFF)
_out["seq"] = _k.seq
print(json.dumps(_out))
"""


def _policy(seq: int, key: bytes, separator: bytes) -> bytes:
    policy = SpendingPolicy(channel_id=CHANNEL, seq=seq, deposit=10**9, budget=5 * 10**8,
                            expiry=1_800_000_000, max_unit_price=30_000, per_minute=30,
                            product_caps=(("nav", 10**8), ("weather", 10**8)))
    return policy.sign(key, separator).encode()


def _median(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def run_policy_bench(rounds: int = ROUNDS) -> dict[str, Any]:
    """Flash the emulated board, apply ``rounds`` + 1 policies, return the figures."""
    from ..device.boards import BOARDS
    from ..device.flash import Artifact, build, build_romfs, flash, split_romfs
    from ..device.repl import Repl
    from ..device.sim import BoardSim
    from ..servers.mosquitto import Mosquitto
    from .device import comb_table

    separator = domain_separator(CHAIN_ID, ESCROW)
    policies = [_policy(seq, OWNER_KEY, separator).hex() for seq in range(1, rounds + 2)]
    stranger = _policy(10**6, STRANGER_KEY, separator).hex()
    spec = BOARDS["qemu_mps2"]
    modules, rest = split_romfs(build(spec, lambda message: None))
    with tempfile.TemporaryDirectory(prefix="nanotoll-bench-policy-") as tmp, \
            Mosquitto(secure=False) as broker:
        # the firmware in a ROMFS image run in place, with G's comb table, as
        # `nanotoll device flash --romfs` deploys it
        image = Path(tmp) / "romfs.img"
        table = comb_table(Path(tmp))
        image.write_bytes(build_romfs([*modules, Artifact(table, "/lib/g.tbl",
                                                          table.read_bytes())]))
        with BoardSim(broker.host, broker.port, icount=True, romfs=image) as sim, \
                Repl(sim.pty) as repl:
            flash(repl, spec, rest, lambda message: None, reset=False)
            out = repl.exec(_MEASURE % {
                "owner": address_of(OWNER_KEY)[2:], "channel": CHANNEL,
                "separator": separator.hex(), "policies": policies, "stranger": stranger},
                timeout=900)
    samples = json.loads(out.strip().splitlines()[-1])
    print("bench policy: samples (ticks)", samples, file=sys.stderr)
    if samples["seq"] != rounds + 1:
        raise RuntimeError(f"the board applied up to seq {samples['seq']}, not {rounds + 1}")
    return {
        "instructions_policy_apply": _median(samples["apply"][1:]) * TICK_INSTRUCTIONS,
        "instructions_policy_refused": _median(samples["refused"][1:]) * TICK_INSTRUCTIONS,
        "heap_bytes_allocated_policy_apply": max(samples["heap"][1:]),
        "policy_bytes": len(bytes.fromhex(policies[0])),
        "runtime": "MicroPython 1.25 on QEMU mps2-an385 (Cortex-M3), boards/qemu_mps2 "
                   "firmware, the modules as .mpy in a ROMFS image run in place with G's "
                   "comb table, the policy on littlefs, -icount shift=0",
    }


if __name__ == "__main__":
    print(json.dumps(run_policy_bench(), sort_keys=True))
