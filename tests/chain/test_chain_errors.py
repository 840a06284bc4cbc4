"""Node errors sorted into the chain's one family, by what geth and anvil say (the anvil
cases the settler meets are also run live in test_chain_settlement.py)."""

from __future__ import annotations

import pytest
from nanotoll.chain.errors import (
    ChainError,
    ChannelUnavailable,
    NodeUnavailable,
    NonceTooLow,
    TxKnown,
    TxRefused,
    TxReverted,
    Underpriced,
)
from nanotoll.chain.node import classify
from nanotoll.ledger import LeaseBusy, LedgerError
from web3.exceptions import ContractLogicError


@pytest.mark.parametrize(("error", "kind"), [
    (ContractLogicError("execution reverted: custom error 0x1234"), TxReverted),
    (ValueError("already known"), TxKnown),
    (ValueError("known transaction: 0xabc"), TxKnown),
    (ValueError("nonce too low: next nonce 5, tx nonce 4"), NonceTooLow),
    (ValueError("replacement transaction underpriced"), Underpriced),
    (ValueError("max fee per gas less than block base fee"), Underpriced),
    (ConnectionRefusedError(111, "Connection refused"), NodeUnavailable),
    (TimeoutError("read timed out"), NodeUnavailable),
    (ValueError("insufficient funds for gas * price + value"), ChainError),
])
def test_node_errors_are_sorted_by_what_the_node_says(error: Exception,
                                                      kind: type[ChainError]) -> None:
    sorted_error = classify(error)
    assert type(sorted_error) is kind
    assert str(error)[:40] in str(sorted_error)


def test_one_family_and_the_lease_belongs_to_the_ledger() -> None:
    for kind in (NodeUnavailable, ChannelUnavailable, TxReverted, TxRefused, TxKnown,
                 NonceTooLow, Underpriced):
        assert issubclass(kind, ChainError)
    assert issubclass(ChannelUnavailable, NodeUnavailable)
    assert not issubclass(TxReverted, TxRefused)
    assert issubclass(LeaseBusy, LedgerError) and not issubclass(LeaseBusy, ChainError)
    assert "settlement" in str(LeaseBusy("settlement"))
