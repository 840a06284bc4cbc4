"""``nanotoll provider feedback``: an owner's score for a provider, given only with a
proof of payment: a redeem transaction on the provider's escrow whose ``Redeemed`` event
paid the provider out of a channel this owner funded.

On chain, the feedback carries that proof: ``feedbackHash`` is the redeem transaction's
hash, ``endpoint`` the provider's broker URL (the service rated), ``tag1`` ``starred``
(the ERC's tag for a 0-100 score) and ``tag2`` ``nanotoll``.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound

from ..chain.client import EscrowClient
from .errors import IdentityError
from .registry import ReputationRegistryClient

SCORE_TAG = "starred"
PROJECT_TAG = "nanotoll"


@dataclass(frozen=True, slots=True)
class PaymentProof:
    tx_hash: bytes  # 32 bytes
    channels: tuple[int, ...]  # the owner's channels the redeem paid the provider from
    amount: int


def check_payment(w3: Web3, escrow: str, tx_hash: str, payer: str,
                  provider: str) -> PaymentProof:
    """The redeem ``tx_hash`` as a proof that ``provider`` was paid from ``payer``'s
    channel on ``escrow``; :class:`IdentityError` otherwise."""
    text = tx_hash.removeprefix("0x")
    if len(text) != 64:
        raise IdentityError(f"--tx {tx_hash!r}: a transaction hash is 32 bytes of hex")
    try:
        raw = bytes.fromhex(text)
        receipt = w3.eth.get_transaction_receipt(HexBytes(raw))
    except ValueError:
        raise IdentityError(f"--tx {tx_hash!r}: not hex") from None
    except TransactionNotFound:
        raise IdentityError(f"transaction {tx_hash} is not on chain {w3.eth.chain_id}") \
            from None
    if receipt["status"] != 1:
        raise IdentityError(f"transaction {tx_hash} reverted: it paid nobody")
    client = EscrowClient(w3, escrow)
    payer, provider = to_checksum_address(payer), to_checksum_address(provider)
    channels: list[int] = []
    amount = 0
    for item in client.redeem_result(receipt).redeemed:
        state = client.channel(item.channel_id)
        if state.payer == payer and state.payee == provider and item.amount > 0:
            channels.append(item.channel_id)
            amount += item.amount
    if not channels:
        raise IdentityError(f"transaction {tx_hash} redeemed nothing on escrow "
                            f"{client.address} from a channel paid by {payer} to {provider}: "
                            "it is no proof of payment for this feedback")
    return PaymentProof(raw, tuple(channels), amount)


def give_feedback(reputation: ReputationRegistryClient, owner: LocalAccount, agent_id: int,
                  score: int, proof: PaymentProof, endpoint: str) -> str:
    """Send the feedback; returns its transaction hash."""
    if not 0 <= score <= 100:
        raise IdentityError(f"--score {score}: a score is 0..100")
    receipt = reputation.give_feedback(owner, agent_id, score, SCORE_TAG, PROJECT_TAG,
                                       endpoint, "", proof.tx_hash)
    return str(receipt["transactionHash"].to_0x_hex())
