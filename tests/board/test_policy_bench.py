"""`nanotoll bench policy` on the emulated board: applying an owner-signed policy, and
refusing one signed by another key, each costs about one signature recovery."""

from __future__ import annotations

from support.tools import require


def test_policy_bench_reports_instructions_and_heap() -> None:
    require("qemu-board")
    from nanotoll.bench.policy import run_policy_bench

    figures = run_policy_bench(rounds=2)
    print(figures)
    apply, refused = figures["instructions_policy_apply"], figures["instructions_policy_refused"]
    assert 1_000_000 < refused < 200_000_000
    # the accepted one also writes the policy to flash; both recover one signature
    assert refused * 0.8 < apply < refused * 1.5
    assert 0 < figures["heap_bytes_allocated_policy_apply"] < 1_000_000
    assert figures["policy_bytes"] < 1024
