"""anvil on a free loopback port, for tests, the demo and the gas benchmark, and the
anvil RPC that moves its clock (:func:`increase_time`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Self

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from .process import LOOPBACK, ManagedProcess, ServiceError, free_port, port_in_use
from .tools import anvil_binary

DEFAULT_CHAIN_ID = 31337


class Anvil(ManagedProcess):
    """``anvil --port P --host 127.0.0.1``, stopped when the ``with`` block ends.

    The binary comes from ``NANOTOLL_ANVIL``, else the project's node_modules, else PATH.
    Accounts are made with :meth:`new_account` (a fresh key funded with anvil_setBalance),
    so nothing depends on anvil's well-known development keys.
    """

    name = "anvil"

    def __init__(self, port: int | None = None, chain_id: int = DEFAULT_CHAIN_ID,
                 workdir: Path | None = None, extra_args: tuple[str, ...] = (),
                 timeout: float = 30.0) -> None:
        super().__init__(workdir)
        self.host = LOOPBACK
        self.port = port or free_port()
        self.chain_id = chain_id
        self.binary = anvil_binary()
        self.extra_args = extra_args
        self.timeout = timeout
        self._w3: Web3 | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def w3(self) -> Web3:
        if self._w3 is None:
            self._w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 30}))
        return self._w3

    def start(self) -> None:
        if port_in_use(self.port):
            raise ServiceError(f"port {self.port} is taken: stop what listens there or pick "
                               "another port")
        self.spawn([self.binary, "--port", str(self.port), "--host", self.host,
                    "--chain-id", str(self.chain_id), *self.extra_args])
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise ServiceError(f"anvil exited with code {self.process.returncode}\n{tail}")
            try:
                if self.w3.eth.chain_id == self.chain_id:
                    return
            except Exception as exc:  # not listening yet
                last_error = exc
            time.sleep(0.05)
        raise ServiceError(f"anvil did not answer on {self.rpc_url} within {self.timeout:.0f} s"
                           f" ({last_error})")

    def new_account(self, ether: int = 1000) -> LocalAccount:
        """A fresh random key with ``ether`` ETH on this chain."""
        account: LocalAccount = Account.create()
        self.set_balance(account.address, ether * 10**18)
        return account

    def set_balance(self, address: str, wei: int) -> None:
        self._rpc("anvil_setBalance", [address, hex(wei)])

    def increase_time(self, seconds: int) -> int:
        """Move the chain clock forward and mine a block; returns the new block timestamp."""
        return increase_time(self.w3, seconds)

    def _rpc(self, method: str, params: list[Any]) -> Any:
        response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in response:
            raise ServiceError(f"{method} failed: {response['error']}")
        return response.get("result")


def increase_time(w3: Web3, seconds: int) -> int:
    """``evm_increaseTime`` then ``evm_mine`` on an anvil node; returns the new timestamp."""
    w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    return int(w3.eth.get_block("latest")["timestamp"])
