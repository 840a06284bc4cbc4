"""``nanotoll provider register``: the provider's agent in the identity registry, made
to match the gateway's config. Each step runs only when the chain differs from what is
wanted, so a second run with nothing changed sends no transaction."""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount

from .errors import IdentityError
from .registry import IdentityRegistryClient


@dataclass
class RegistrationOutcome:
    agent_id: int
    agent_uri: str
    wallet: str
    actions: list[str] = field(default_factory=list)  # what was done, in order


def register_agent(registry: IdentityRegistryClient, owner: LocalAccount, agent_uri: str,
                   wallet_key: bytes, wallet: str, now: int,
                   agent_id: int = 0) -> RegistrationOutcome:
    """Register ``owner``'s agent at ``agent_uri`` (or find the one it has: ``agent_id``,
    else its first in the registry's events), update its URI when it changed, and point
    its agentWallet at ``wallet`` (the key that signs the catalog) with that key's proof."""
    registry.check_deployed()
    if agent_id == 0:
        owned = registry.agents_of(owner.address)
        agent_id = owned[0] if owned else 0
    elif registry.owner_of(agent_id) != owner.address:
        raise IdentityError(f"agent {agent_id} in {registry.address} is owned by "
                            f"{registry.owner_of(agent_id)}, not by {owner.address}: "
                            "register with that key, or drop [identity] agent_id")
    outcome = RegistrationOutcome(agent_id, agent_uri, wallet)
    if agent_id == 0:
        outcome.agent_id, _ = registry.register(owner, agent_uri)
        outcome.actions.append(f"registered agent {outcome.agent_id} with URI {agent_uri}")
    else:
        current = registry.agent_uri(agent_id)
        if current != agent_uri:
            registry.set_agent_uri(owner, agent_id, agent_uri)
            outcome.actions.append(f"agent {agent_id}: URI updated from {current} to "
                                   f"{agent_uri}")
        else:
            outcome.actions.append(f"agent {agent_id}: URI unchanged ({agent_uri})")
    if registry.agent_wallet(outcome.agent_id) != wallet:
        registry.set_agent_wallet(owner, outcome.agent_id, wallet_key, now)
        outcome.actions.append(f"agent {outcome.agent_id}: agentWallet set to {wallet} "
                               "(its EIP-712 proof)")
    else:
        outcome.actions.append(f"agent {outcome.agent_id}: agentWallet unchanged ({wallet})")
    return outcome
