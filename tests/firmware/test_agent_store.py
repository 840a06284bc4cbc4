"""firmware/store.py under the real MicroPython unix port: one checksummed record,
atomic replacement, and refusal of a corrupt record."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from support.agent_helpers import run_mp

WRITE = """
from store import Store, State
s = Store(".", 7)
st = s.load()
print(st.cumulative, st.seq, s.corrupt)
st.cumulative = 4500; st.acked = 3000; st.spent = 4500; st.request_id = 3
st.pending = b"\\x87\\x01request"; st.by_product["weather"] = 4500; st.history = [1, 1500]
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
                              "hist": [1, 1500], "seq": 1, "corrupt": None}
    raw = (tmp_path / "state.rec").read_bytes()
    assert raw[:4] == b"NTS2" and not (tmp_path / "state.tmp").exists()
    assert raw[-32:] == hashlib.sha256(raw[:-32]).digest()
    # in RAM a history time counts from HISTORY_EPOCH; on flash it is a unix time
    assert json.loads(raw[4:-32])["hist"] == [[1_700_000_001, 1500]]


def record(body: dict) -> bytes:
    """A record as this firmware writes it: magic, body, sha256 of both."""
    raw = b"NTS2" + json.dumps(body).encode()
    return raw + hashlib.sha256(raw).digest()


def record_v1(body: dict) -> bytes:
    """A record as the firmware wrote it before NTS2: magic, body length, body, sha256."""
    raw = json.dumps(body).encode()
    head = b"NTS1" + len(raw).to_bytes(2, "big")
    return head + raw + hashlib.sha256(head + raw).digest()


def test_record_of_the_earlier_firmware_loads(tmp_path: Path) -> None:
    body = {"v": 1, "ch": 7, "cum": 4500, "ack": 3000, "spent": 4500, "rid": 3, "seq": 9,
            "pend": "8701", "by": {"weather": 4500}, "hist": [[1_790_000_000, 1500]]}
    (tmp_path / "state.rec").write_bytes(record_v1(body))
    assert read(tmp_path) == {"cum": 4500, "ack": 3000, "spent": 4500, "rid": 3,
                              "pend": "8701", "by": {"weather": 4500},
                              "hist": [90_000_000, 1500], "seq": 9, "corrupt": None}
    raw = record_v1(body)
    (tmp_path / "state.rec").write_bytes(raw[:4] + b"\x00\x10" + raw[6:])
    assert read(tmp_path) == {"corrupt": "bad record length"}
    # resumed and written again, it becomes a record of this firmware's version
    (tmp_path / "state.rec").write_bytes(raw)
    run_mp("from store import Store\ns = Store('.', 7)\ns.save(s.load())\n", tmp_path)
    assert (tmp_path / "state.rec").read_bytes()[:4] == b"NTS2"
    assert read(tmp_path)["cum"] == 4500 and read(tmp_path)["seq"] == 10


def test_record_larger_than_any_written_is_refused(tmp_path: Path) -> None:
    run_mp(WRITE, tmp_path)
    raw = (tmp_path / "state.rec").read_bytes()
    big = raw[:-32] + b" " * 5000
    (tmp_path / "state.rec").write_bytes(big + hashlib.sha256(big).digest())
    assert read(tmp_path) == {"corrupt": "record too large"}


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


def test_checksummed_record_with_a_bad_spend_per_product_is_refused(tmp_path: Path) -> None:
    """A record that verifies but holds what the firmware never writes: refused as
    corrupt, never resumed (a negative spend would lift a product's cap)."""
    for by in ({"weather": -5}, {"weather": "5"}, {"weather": 1.5}):
        (tmp_path / "state.rec").write_bytes(record({
            "v": 1, "ch": 7, "cum": 0, "ack": 0, "spent": 0, "rid": 0, "seq": 1, "pend": "",
            "by": by, "hist": []}))
        assert read(tmp_path) == {"corrupt": "record: spent per product"}, by


def test_torn_temp_file_is_ignored(tmp_path: Path) -> None:
    run_mp(WRITE, tmp_path)
    (tmp_path / "state.tmp").write_bytes(b"NTS2{\"v\": 1, \"ch\"")  # cut mid-write
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


HISTORY = """
import json
from store import record_purchase, new_history, HISTORY_EPOCH
history = new_history()
out = []
for now, amount in json.loads(open("purchases.json").read()):
    record_purchase(history, now, amount)
    out.append([[history[i] + HISTORY_EPOCH, history[i + 1]] for i in range(0, len(history), 2)])
print(json.dumps(out))
"""


def reference_history(history: list[list[int]], now: int, amount: int) -> list[list[int]]:
    """What the agent kept before the history moved to store.record_purchase: the hour's
    entries, the oldest folded into the next one beyond 63, then the new one."""
    hist = [h for h in history if now - h[0] < 3600]
    if len(hist) >= 64:
        cut = len(hist) - 64 + 1
        hist = [[hist[cut][0], sum(h[1] for h in hist[:cut + 1])]] + hist[cut + 1:]
    return [*hist, [now, amount]]


def test_history_keeps_the_hour_in_64_entries(tmp_path: Path) -> None:
    """A burst of 150 purchases in under an hour, then more after a gap: at most 64
    entries, no unit of the hour lost, entries that left the hour gone; the same lists
    as the agent's earlier code made."""
    start = 1_790_000_000
    purchases = [[start + 7 * i, 100 + i] for i in range(150)]
    purchases += [[start + 3000 + 30 * i, 5] for i in range(40)]
    purchases += [[start + 9000, 7]]  # everything before has left the hour
    (tmp_path / "purchases.json").write_text(json.dumps(purchases))
    got = json.loads(run_mp(HISTORY, tmp_path))
    expected: list[list[int]] = []
    for (now, amount), history in zip(purchases, got, strict=True):
        expected = reference_history(expected, now, amount)
        assert history == expected
        assert len(history) <= 64
    assert got[149][-1] == [start + 7 * 149, 249] and len(got[149]) == 64
    assert sum(a for _, a in got[149]) == sum(100 + i for i in range(150))
    assert got[-1] == [[start + 9000, 7]]


def test_history_is_updated_in_place_without_a_new_block(tmp_path: Path) -> None:
    """With 64 entries, a purchase allocates no new list: the 512-byte block a new list
    needs was the allocation a purchase failed on first on a fragmented heap."""
    script = """
import gc, json
from store import record_purchase, new_history
history = new_history([(1790000000 + i, 5) for i in range(64)])
record_purchase(history, 1790000100, 7)
gc.collect()
gc.disable()
before = gc.mem_alloc()
for i in range(20):
    record_purchase(history, 1790000200 + i, 7)
print(json.dumps({"per_purchase": (gc.mem_alloc() - before) / 20, "entries": len(history) // 2}))
"""
    result = json.loads(run_mp(script, tmp_path))
    assert result["entries"] == 64
    assert result["per_purchase"] < 64  # a slice and a range object; a list is 512 B


def test_record_with_a_history_the_firmware_never_writes_is_refused(tmp_path: Path) -> None:
    hist = [[1_790_000_000 + i, 1] for i in range(65)]
    (tmp_path / "state.rec").write_bytes(record({
        "v": 1, "ch": 7, "cum": 0, "ack": 0, "spent": 0, "rid": 0, "seq": 1, "pend": "",
        "by": {}, "hist": hist}))
    assert read(tmp_path) == {"corrupt": "record: history of 65 entries"}
    for entry in ([1_790_000_000, -1], [1_790_000_000, "1"], ["1790000000", 1],
                  [1_790_000_000.5, 1]):
        (tmp_path / "state.rec").write_bytes(record({
            "v": 1, "ch": 7, "cum": 0, "ack": 0, "spent": 0, "rid": 0, "seq": 1, "pend": "",
            "by": {}, "hist": [entry]}))
        assert read(tmp_path) == {"corrupt": "record: history entry"}, entry


def test_purchase_whose_record_is_not_written_leaves_no_history(tmp_path: Path) -> None:
    """The history is changed in place and shared with the state in force: when the
    record write fails, the purchase is taken back out of it (the agent's state stays
    the one on flash), and the next purchase is counted once."""
    script = """
import json, os
import wallet as W
from agent import Agent
from policy import Policy
from store import Store
os.mkdir("st")
store = Store("st", 1)
store.load()
policy = Policy({"deposit": 10**9, "budget": 10**9, "per_hour": 10**9, "per_minute": 100})
wallet = W.Wallet(bytes(31) + b"\\x07", 31337, bytes(20), None)
agent = Agent(wallet, None, store, policy, bytes(19) + b"\\x01", 1, clock=lambda: 1790000000)
agent._prepare("weather", {}, 1500, 1, None)
store.state.acked = store.state.cumulative  # as its receipt would: the next adds 1500
os.mkdir("st/state.tmp")  # the next record write fails: its temp path is a folder
try:
    agent._prepare("weather", {}, 1500, 1, None)
    failed = None
except OSError as exc:
    failed = type(exc).__name__
after_failure = list(agent.state.history)
os.rmdir("st/state.tmp")
agent._prepare("weather", {}, 1500, 1, None)
print(json.dumps({"failed": failed, "after_failure": after_failure,
                  "after": list(agent.state.history), "seq": store.state.seq,
                  "on_flash": Store("st", 1).load().history}))
"""
    result = json.loads(run_mp(script, tmp_path))
    t = 1_790_000_000 - 1_700_000_000
    assert result["failed"] == "OSError"
    assert result["after_failure"] == [t, 1500]
    assert result["after"] == result["on_flash"] == [t, 1500, t, 1500]
    assert result["seq"] == 2
