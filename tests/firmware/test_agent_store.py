"""firmware/store.py under the real MicroPython unix port: one checksummed record,
atomic replacement, and refusal of a corrupt record."""

from __future__ import annotations

import json
from pathlib import Path

from support.agent_helpers import run_mp

WRITE = """
from store import Store, State
s = Store(".", 7)
st = s.load()
print(st.cumulative, st.seq, s.corrupt)
st.cumulative = 4500; st.acked = 3000; st.spent = 4500; st.request_id = 3
st.pending = b"\\x87\\x01request"; st.by_product["weather"] = 4500; st.history.append([1, 1500])
s.save(st)
"""

READ = """
import json
from store import Store
s = Store(".", 7)
st = s.load()
if st is None:
    print(json.dumps({"corrupt": s.corrupt}))
else:
    print(json.dumps({"cum": st.cumulative, "ack": st.acked, "spent": st.spent,
                      "rid": st.request_id, "pend": st.pending.hex(), "by": st.by_product,
                      "hist": st.history, "seq": st.seq, "corrupt": s.corrupt}))
"""


def read(folder: Path) -> dict:
    return json.loads(run_mp(READ, folder))


def test_record_roundtrip(tmp_path: Path) -> None:
    assert run_mp(WRITE, tmp_path).split() == ["0", "0", "None"]
    assert read(tmp_path) == {"cum": 4500, "ack": 3000, "spent": 4500, "rid": 3,
                              "pend": b"\x87\x01request".hex(), "by": {"weather": 4500},
                              "hist": [[1, 1500]], "seq": 1, "corrupt": None}
    raw = (tmp_path / "state.rec").read_bytes()
    assert raw[:4] == b"NTS1" and not (tmp_path / "state.tmp").exists()


def test_every_flipped_byte_is_refused(tmp_path: Path) -> None:
    run_mp(WRITE, tmp_path)
    raw = (tmp_path / "state.rec").read_bytes()
    script = """
import json
from store import Store
raw = open("state.rec", "rb").read()
bad = 0
for i in range(len(raw)):
    b = bytearray(raw); b[i] ^= 0x01
    open("state.rec", "wb").write(b)
    s = Store(".", 7)
    if s.load() is None and s.corrupt:
        bad += 1
open("state.rec", "wb").write(raw[:-5])
s = Store(".", 7)
print(json.dumps({"flipped": bad, "truncated": s.load() is None and bool(s.corrupt)}))
"""
    result = json.loads(run_mp(script, tmp_path))
    assert result == {"flipped": len(raw), "truncated": True}


def test_torn_temp_file_is_ignored(tmp_path: Path) -> None:
    run_mp(WRITE, tmp_path)
    (tmp_path / "state.tmp").write_bytes(b"NTS1\x00\x40{\"v\": 1, \"ch\"")  # cut mid-write
    assert read(tmp_path)["cum"] == 4500


def test_complete_temp_file_without_record_is_adopted(tmp_path: Path) -> None:
    """A cut between remove and rename (file systems whose rename does not replace)."""
    run_mp(WRITE, tmp_path)
    (tmp_path / "state.rec").rename(tmp_path / "state.tmp")
    assert read(tmp_path)["cum"] == 4500
    assert (tmp_path / "state.rec").exists() and not (tmp_path / "state.tmp").exists()


def test_record_of_another_channel_starts_fresh(tmp_path: Path) -> None:
    run_mp(WRITE, tmp_path)
    out = run_mp("from store import Store\ns = Store('.', 8)\nprint(s.load().cumulative)\n",
                 tmp_path)
    assert out.strip() == "0"
