"""The ERC-8004 identity and reputation registries from Python (web3.py), and the
agent wallet's EIP-712 proof (contracts/src/erc8004/README.md has both contracts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

from ..chain.abi import shipped_abi
from ..chain.client import deploy_contract, send_transaction
from .errors import IdentityError

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
WALLET_DOMAIN = {"name": "ERC8004IdentityRegistry", "version": "1"}
WALLET_TYPES = {"AgentWalletSet": [
    {"name": "agentId", "type": "uint256"}, {"name": "newWallet", "type": "address"},
    {"name": "owner", "type": "address"}, {"name": "deadline", "type": "uint256"}]}
# The registry accepts a deadline at most five minutes ahead; one minute leaves room for
# a slow block without giving a replay a long window.
WALLET_PROOF_TTL = 60


def wallet_proof(wallet_key: bytes, chain_id: int, registry: str, agent_id: int, owner: str,
                 deadline: int) -> bytes:
    """The new wallet's 65-byte ``r | s | v`` signature of AgentWalletSet."""
    signed = Account.from_key(wallet_key).sign_typed_data(
        {**WALLET_DOMAIN, "chainId": chain_id, "verifyingContract": to_checksum_address(registry)},
        WALLET_TYPES,
        {"agentId": agent_id, "newWallet": Account.from_key(wallet_key).address,
         "owner": to_checksum_address(owner), "deadline": deadline})
    return bytes(signed.signature)


@dataclass(frozen=True, slots=True)
class Registries:
    """Where both registries are: ``identity`` and ``reputation`` (checksummed)."""

    identity: str
    reputation: str


def deploy_registries(w3: Web3, deployer: LocalAccount) -> Registries:
    """Deploy an identity registry and a reputation registry bound to it, from forge's
    artifacts (development chains: on a public chain, configure the existing ones)."""
    from ..chain.artifacts import load_artifact

    identity = deploy_contract(w3, deployer, load_artifact("IdentityRegistry"))
    reputation = deploy_contract(w3, deployer, load_artifact("ReputationRegistry"), identity)
    return Registries(identity, reputation)


class IdentityRegistryClient:
    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.contract: Contract = w3.eth.contract(address=to_checksum_address(address),
                                                  abi=shipped_abi("IdentityRegistry"))

    @property
    def address(self) -> str:
        return str(self.contract.address)

    def _send(self, account: LocalAccount, call: ContractFunction) -> TxReceipt:
        return send_transaction(self.w3, account, call, abi=self.contract.abi)

    def check_deployed(self) -> None:
        if not self.w3.eth.get_code(self.contract.address):
            raise IdentityError(f"no identity registry at {self.address} on chain "
                                f"{self.w3.eth.chain_id} (no code there)")

    def exists(self, agent_id: int) -> bool:
        return 1 <= agent_id <= int(self.contract.functions.lastAgentId().call())

    def owner_of(self, agent_id: int) -> str:
        self._require(agent_id)
        return str(to_checksum_address(self.contract.functions.ownerOf(agent_id).call()))

    def agent_uri(self, agent_id: int) -> str:
        self._require(agent_id)
        return str(self.contract.functions.tokenURI(agent_id).call())

    def agent_wallet(self, agent_id: int) -> str | None:
        """The agent's wallet, None when it was cleared (a transfer clears it)."""
        self._require(agent_id)
        wallet = to_checksum_address(self.contract.functions.getAgentWallet(agent_id).call())
        return None if wallet == ZERO_ADDRESS else str(wallet)

    def _require(self, agent_id: int) -> None:
        try:
            known = self.exists(agent_id)
        except (ContractLogicError, ValueError) as exc:
            raise IdentityError(f"{self.address} does not answer as an identity registry: "
                                f"{exc}") from None
        if not known:
            raise IdentityError(f"agent {agent_id} is not registered in the identity "
                                f"registry {self.address} on chain {self.w3.eth.chain_id}")

    def agents_of(self, owner: str) -> list[int]:
        """The ids ``owner`` registered and still owns, oldest first."""
        logs = self._logs(lambda: self.contract.events.Registered().get_logs(
            from_block=0, argument_filters={"owner": to_checksum_address(owner)}))
        ids = sorted({int(log["args"]["agentId"]) for log in logs})
        return [i for i in ids if self.owner_of(i) == to_checksum_address(owner)]

    def agents_with_wallet(self, wallet: str) -> list[int]:
        """The ids whose agentWallet is ``wallet`` now, oldest first (from the
        ``MetadataSet`` events every wallet change emits)."""
        wallet = to_checksum_address(wallet)
        raw = bytes.fromhex(wallet[2:])
        logs = self._logs(lambda: self.contract.events.MetadataSet().get_logs(from_block=0))
        ids = sorted({int(log["args"]["agentId"]) for log in logs
                      if log["args"]["metadataKey"] == "agentWallet"
                      and bytes(log["args"]["metadataValue"]) == raw})
        return [i for i in ids if self.agent_wallet(i) == wallet]

    def _logs(self, read: Callable[[], Any]) -> Any:
        """The registry's logs since block 0: fine on a development chain; a public
        node may refuse the range, and then the agent id has to be given."""
        try:
            return read()
        except Exception as exc:
            raise IdentityError(f"cannot read the events of {self.address} from block 0 "
                                f"({exc}): set [identity] agent_id") from None

    def register(self, owner: LocalAccount, agent_uri: str) -> tuple[int, TxReceipt]:
        receipt = self._send(owner, self.contract.functions.register(agent_uri))
        events = self.contract.events.Registered().process_receipt(receipt, errors=DISCARD)
        return int(events[0]["args"]["agentId"]), receipt

    def set_agent_uri(self, owner: LocalAccount, agent_id: int, uri: str) -> TxReceipt:
        return self._send(owner, self.contract.functions.setAgentURI(agent_id, uri))

    def set_agent_wallet(self, owner: LocalAccount, agent_id: int, wallet_key: bytes,
                         now: int) -> TxReceipt:
        """Point the agent's wallet at the key ``wallet_key``, with that key's proof."""
        deadline = now + WALLET_PROOF_TTL
        wallet = Account.from_key(wallet_key).address
        proof = wallet_proof(wallet_key, int(self.w3.eth.chain_id), self.address, agent_id,
                             owner.address, deadline)
        return self._send(owner, self.contract.functions.setAgentWallet(
            agent_id, wallet, deadline, proof))


@dataclass(frozen=True, slots=True)
class FeedbackSummary:
    count: int
    value: int
    decimals: int

    def text(self) -> str:
        if not self.count:
            return "no feedback"
        mean = self.value / 10 ** self.decimals
        return f"{self.count} feedback, mean {mean:g}"


@dataclass(frozen=True, slots=True)
class Feedback:
    client: str
    index: int
    value: int
    decimals: int
    tag1: str
    tag2: str
    revoked: bool


class ReputationRegistryClient:
    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.contract: Contract = w3.eth.contract(address=to_checksum_address(address),
                                                  abi=shipped_abi("ReputationRegistry"))

    @property
    def address(self) -> str:
        return str(self.contract.address)

    def identity_registry(self) -> str:
        return str(to_checksum_address(self.contract.functions.getIdentityRegistry().call()))

    def give_feedback(self, client: LocalAccount, agent_id: int, score: int, tag1: str,
                      tag2: str, endpoint: str, feedback_uri: str,
                      feedback_hash: bytes) -> TxReceipt:
        """A 0-100 score: ``value`` = score, ``valueDecimals`` = 0."""
        return send_transaction(self.w3, client, self.contract.functions.giveFeedback(
            agent_id, score, 0, tag1, tag2, endpoint, feedback_uri, feedback_hash),
            abi=self.contract.abi)

    def clients(self, agent_id: int) -> list[str]:
        return [str(to_checksum_address(a))
                for a in self.contract.functions.getClients(agent_id).call()]

    def summary(self, agent_id: int) -> FeedbackSummary:
        """Over every client that rated ``agent_id`` (the registry refuses an empty list)."""
        clients = self.clients(agent_id)
        if not clients:
            return FeedbackSummary(0, 0, 0)
        count, value, decimals = self.contract.functions.getSummary(
            agent_id, clients, "", "").call()
        return FeedbackSummary(int(count), int(value), int(decimals))

    def feedback(self, agent_id: int) -> list[Feedback]:
        clients = self.clients(agent_id)
        if not clients:
            return []
        result: Any = self.contract.functions.readAllFeedback(
            agent_id, clients, "", "", True).call()
        return [Feedback(str(to_checksum_address(c)), int(i), int(v), int(d), t1, t2, bool(r))
                for c, i, v, d, t1, t2, r in zip(*result, strict=True)]
