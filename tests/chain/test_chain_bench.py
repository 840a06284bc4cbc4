"""The gas benchmark on a real anvil meets issue 4's targets."""

from __future__ import annotations

from nanotoll.bench.gas import run_gas_bench

X402_SINGLE_CLAIM = 40_252  # x402 batch-settlement: one voucher, execution gas
BASE_TX_GAS = 21_000


def test_gas_bench_meets_targets() -> None:
    figures = run_gas_bench()
    print(figures)
    assert figures["gas_per_channel_batch_100"] <= 12_000
    assert figures["gas_redeem_single"] < X402_SINGLE_CLAIM + BASE_TX_GAS
    assert figures["gas_batch_100"] < figures["gas_redeem_single"] * 100
    assert figures["max_redeem_batch"] == 1000
    # A fleet's top-up costs less per channel than topping up channels one by one.
    assert figures["gas_top_up_many_per_channel"] < figures["gas_top_up"] // 2
    assert figures["gas_extend_many_per_channel"] < figures["gas_top_up_many_per_channel"]
    assert all(isinstance(value, int) and value > 0 for value in figures.values())
