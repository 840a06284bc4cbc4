"""The purchase log: written by the firmware (unix port, and littlefs cut at every flash
operation of an append), read and verified offline by nanotoll.device.purchases."""

from __future__ import annotations

import json
from pathlib import Path

from nanotoll.device.purchases import RECORD, purchases, render_csv
from nanotoll.protocol.signing import address_of
from support.agent_helpers import mp_env
from support.paths import MPY_TESTS
from support.tools import require

ESCROW = "0x95c62b7bca32875bad1194eb8c6a158277366fd9"


def _run(tmp_path: Path) -> dict:
    import subprocess

    binary = require("littlefs")
    env = mp_env()
    env["MICROPYPATH"] += f":{MPY_TESTS}"
    done = subprocess.run([binary, str(MPY_TESTS / "purchase_log_mp.py"), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _export(raw: bytes) -> dict:
    return {"chain_id": 31337, "escrow": ESCROW, "channel": 9,
            "provider": address_of(b"\x11" * 32), "entries": 4,
            "records": [raw[i:i + RECORD].hex() for i in range(0, len(raw), RECORD)]}


def test_bounded_ring_and_every_receipt_verifies_offline(tmp_path: Path) -> None:
    report = _run(tmp_path)
    assert report["kept"] == [2, 3, 4, 5] and report["next_seq"] == 6
    raw = (tmp_path / "purchases.log").read_bytes()
    assert len(raw) == 4 * RECORD
    rows, torn = purchases(_export(raw))
    assert torn == 0
    assert [(r.seq, r.cumulative, r.product, r.price) for r in rows] == [
        (n, 1500 * (n + 1), "weather", 1500) for n in range(2, 6)]
    assert all(row.verified for row in rows)
    assert render_csv(rows).splitlines()[0].startswith("seq,time,provider,product,price")

    # A receipt signature changed on the way: still intact as a record, no longer verified.
    record = bytearray(raw[:RECORD])
    record[150] ^= 1
    import hashlib

    record[205:] = hashlib.sha256(bytes(record[:205])).digest()[:8]
    rows, _ = purchases(_export(bytes(record) + raw[RECORD:]))
    assert [row.verified for row in rows].count(False) == 1
    # A torn record (check fails) is counted and left out.
    torn_raw = bytearray(raw)
    torn_raw[RECORD + 40] ^= 1
    rows, torn = purchases(_export(bytes(torn_raw)))
    assert torn == 1 and len(rows) == 3


def test_a_power_cut_during_an_append_leaves_the_old_log_or_the_new(tmp_path: Path) -> None:
    report = _run(tmp_path)
    assert report["faults"] == []
    assert report["flash_ops_per_append"] >= 1
    assert set(report["outcomes"]) <= {"old", "new"} and report["outcomes"].get("new", 0) >= 1
    assert sum(report["outcomes"].values()) == report["flash_ops_per_append"] + 1
