"""`nanotoll bench agent` runs on the emulated board and reports its figures (the
figures themselves are a benchmark, not a pass/fail line here)."""

from __future__ import annotations

from support.tools import require


def test_agent_bench_reports_instructions_and_heap() -> None:
    require("qemu-board")
    from nanotoll.bench.agent import run_agent_bench

    figures = run_agent_bench(rounds=2, heap_step=4096)
    print(figures)
    assert 1_000_000 < figures["instructions_per_purchase"] < 500_000_000
    assert figures["deployment"] == "romfs"
    assert figures["history_entries"] == 64  # measured as a device in steady use
    assert 1_000_000 < figures["instructions_per_purchase_filesystem"] < 500_000_000
    assert 8192 < figures["min_heap_bytes_purchase"] <= figures["board_free_heap_bytes"]
    # .mpy run in place from ROMFS keep their bytecode out of the heap: well under the
    # same files on littlefs (tens of KB apart; the step here is 4 KB)
    assert figures["min_heap_bytes_purchase"] + 8192 < figures[
        "min_heap_bytes_purchase_filesystem"]
    # the board's qstr_info line was read: pools hold the names the modules brought
    assert figures["qstr_pools_purchase"] >= 1
    assert figures["dynamic_qstrs_purchase"] > 0
    assert figures["dynamic_qstrs_purchase_filesystem"] > 0
    # the search's failed trials (below the least heap) each raised MemoryError: short
    # of heap, a purchase says so, not a time-out or an undecodable response
    assert figures["heap_trials_failed"] >= 2
    assert figures["heap_trials_failed_not_memory"] == 0
