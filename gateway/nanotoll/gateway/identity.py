"""What the gateway says about its ERC-8004 identity: the registration file (web listener
and retained MQTT message) and a JSON summary for the operator page (agent id, its
registry, the reputation registry's feedback summary).

The agent id comes from [identity] agent_id or, when that is 0, from the identity
registry: the agent whose agentWallet is the provider's key. The chain is read only when a
page is asked for, and the registry's events at most once per block (the file is public:
asking often must not make the gateway read the chain often); a node that does not
answer leaves the id out rather than failing the page.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

from ..identity.errors import IdentityError
from ..identity.provider_file import agent_uri, provider_registration
from ..identity.reference import registry_name
from ..identity.registration import PLAIN_PATH, WELL_KNOWN_PATH
from ..protocol.messages import Catalog
from .config import GatewayConfig

SUMMARY_PATH = "/identity.json"


class IdentityDocuments:
    def __init__(self, config: GatewayConfig, provider: str,
                 catalog: Callable[[], Catalog]) -> None:
        self.config = config
        self.provider = provider
        self._catalog = catalog
        self._lock = threading.Lock()
        self._agent_id = config.identity.agent_id
        self._looked_at: int | None = None  # the block of the last look-up
        self._w3: Any = None

    def routes(self) -> dict[str, Callable[[], bytes]]:
        """Path -> body (JSON) for the web listener."""
        return {WELL_KNOWN_PATH: self.registration, PLAIN_PATH: self.registration,
                SUMMARY_PATH: self.summary}

    def registration(self) -> bytes:
        agent_id = self.agent_id()
        return provider_registration(self.config, self.provider, self._catalog(),
                                     [agent_id] if agent_id else []).encode()

    def agent_id(self) -> int:
        """The provider's agent id, 0 while it is not known."""
        registry = self.config.identity.identity_registry
        with self._lock:
            if self._agent_id or registry is None:
                return self._agent_id
        try:
            from ..identity.registry import IdentityRegistryClient

            head = int(self._web3().eth.block_number)
            with self._lock:
                if head == self._looked_at:
                    return 0
                self._looked_at = head
            ids = IdentityRegistryClient(self._web3(), registry).agents_with_wallet(
                self.provider)
        except Exception:  # the node is down or the registry is not there: no id yet
            return 0
        with self._lock:
            if ids:
                self._agent_id = ids[0]
            return self._agent_id

    def summary(self) -> bytes:
        identity = self.config.identity
        document: dict[str, Any] = {"provider": self.provider, "name": identity.name,
                                    "agentId": None, "agentRegistry": None, "agentURI": None,
                                    "feedback": None}
        with contextlib.suppress(IdentityError):
            document["agentURI"] = agent_uri(self.config)
        agent_id = self.agent_id()
        if agent_id and identity.identity_registry is not None:
            document["agentId"] = agent_id
            document["agentRegistry"] = registry_name(self.config.chain.chain_id,
                                                      identity.identity_registry)
            if identity.reputation_registry is not None:
                try:
                    from ..identity.registry import ReputationRegistryClient

                    got = ReputationRegistryClient(self._web3(), identity.reputation_registry
                                                   ).summary(agent_id)
                    document["feedback"] = {"count": got.count, "value": got.value,
                                            "decimals": got.decimals}
                except Exception:  # a summary the node cannot give is left out
                    pass
        return json.dumps(document, sort_keys=True).encode() + b"\n"

    def _web3(self) -> Any:
        if self._w3 is None:
            from web3 import Web3

            self._w3 = Web3(Web3.HTTPProvider(self.config.chain.rpc_url,
                                              request_kwargs={"timeout": 5}))
        return self._w3
