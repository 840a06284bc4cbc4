"""ERC-8004 names for registries and agents: ``eip155:CHAIN:REGISTRY`` (the file's
``agentRegistry``) and ``eip155:CHAIN:REGISTRY/AGENT_ID`` (what ``--provider`` takes)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from eth_utils.address import to_checksum_address

from .errors import IdentityError

_AGENT = re.compile(r"eip155:([1-9][0-9]{0,19}):(0x[0-9a-fA-F]{40})/([1-9][0-9]{0,76})")
_REGISTRY = re.compile(r"eip155:([1-9][0-9]{0,19}):(0x[0-9a-fA-F]{40})")


def registry_name(chain_id: int, registry: str) -> str:
    """The CAIP-10 style name of a registry, as the registration file's
    ``registrations[].agentRegistry`` writes it."""
    return f"eip155:{chain_id}:{to_checksum_address(registry)}"


def parse_registry_name(text: str) -> tuple[int, str]:
    """(chain id, checksummed registry) of ``eip155:CHAIN:ADDRESS``."""
    match = _REGISTRY.fullmatch(text)
    if match is None:
        raise IdentityError(f"{text!r} is not a registry name eip155:CHAIN_ID:0xADDRESS")
    return int(match.group(1)), to_checksum_address(match.group(2))


@dataclass(frozen=True, slots=True)
class AgentReference:
    """One agent: its id in one identity registry on one chain."""

    chain_id: int
    registry: str  # checksummed
    agent_id: int

    def __str__(self) -> str:
        return f"{registry_name(self.chain_id, self.registry)}/{self.agent_id}"


def is_agent_reference(text: str) -> bool:
    return text.startswith("eip155:")


def parse_agent_reference(text: str) -> AgentReference:
    match = _AGENT.fullmatch(text)
    if match is None:
        raise IdentityError(f"{text!r} is not an agent reference "
                            "eip155:CHAIN_ID:0xREGISTRY/AGENT_ID (agent ids start at 1)")
    return AgentReference(int(match.group(1)), to_checksum_address(match.group(2)),
                          int(match.group(3)))
