"""``nanotoll provider``: deploy-registries, register, show, feedback (ERC-8004).

The provider's key comes from the gateway's config (``--config``: its [provider] key);
the agent's owner may be another key (``NANOTOLL_AGENT_OWNER_KEY``); a payer's key comes
from ``NANOTOLL_OWNER_KEY`` or ``--keystore``, as for ``nanotoll device provision``.
Keys are never taken from the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .errors import IdentityError

AGENT_OWNER_KEY_ENV = "NANOTOLL_AGENT_OWNER_KEY"


def _fail(exc: Exception) -> int:
    print(f"nanotoll provider: {exc}", file=sys.stderr)
    return 1


def _web3(rpc_url: str) -> Any:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    try:
        w3.eth.chain_id  # noqa: B018 (a first call: fail here if the node is not there)
    except Exception as exc:
        raise IdentityError(f"no Ethereum node answers at {rpc_url}: {exc}") from None
    return w3


def _gateway(path: str) -> tuple[Any, bytes]:
    from ..gateway.config import ConfigError, load_config

    try:
        config = load_config(path)
        return config, config.provider_key()
    except ConfigError as exc:
        raise IdentityError(str(exc)) from None


def _cmd_deploy(args: argparse.Namespace) -> int:
    from eth_account import Account

    from .registry import deploy_registries

    try:
        config, secret = _gateway(args.config)
        registries = deploy_registries(_web3(config.chain.rpc_url), Account.from_key(secret))
    except IdentityError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps({"identity_registry": registries.identity,
                          "reputation_registry": registries.reputation}))
    else:
        print("deployed; add to the gateway's config:\n[identity]\n"
              f'identity_registry = "{registries.identity}"\n'
              f'reputation_registry = "{registries.reputation}"')
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    from eth_account import Account

    from ..protocol.signing import address_of
    from .provider_file import agent_uri
    from .register import register_agent
    from .registry import IdentityRegistryClient

    try:
        config, secret = _gateway(args.config)
        registry_address = config.identity.identity_registry
        if registry_address is None:
            raise IdentityError(f"{config.source}: [identity] identity_registry is not set "
                                "(nanotoll provider deploy-registries makes one on a "
                                "development chain)")
        owner_key = os.environ.get(AGENT_OWNER_KEY_ENV)
        owner = Account.from_key(owner_key or secret)
        w3 = _web3(config.chain.rpc_url)
        outcome = register_agent(IdentityRegistryClient(w3, registry_address), owner,
                                 agent_uri(config), secret, address_of(secret),
                                 int(w3.eth.get_block("latest")["timestamp"]),
                                 config.identity.agent_id)
    except (IdentityError, ValueError) as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps({"agent_id": outcome.agent_id, "agent_uri": outcome.agent_uri,
                          "wallet": outcome.wallet, "actions": outcome.actions,
                          "reference": f"eip155:{config.chain.chain_id}:{registry_address}/"
                                       f"{outcome.agent_id}"}))
    else:
        for action in outcome.actions:
            print(action)
        print(f"devices find it as eip155:{config.chain.chain_id}:{registry_address}/"
              f"{outcome.agent_id}")
    return 0


def _reference(args: argparse.Namespace) -> tuple[Any, str, str | None]:
    """(agent reference, RPC URL, reputation registry or None) from --provider or
    --config."""
    from .reference import AgentReference, parse_agent_reference

    if args.provider is not None:
        return parse_agent_reference(args.provider), args.rpc_url, args.reputation
    if args.config is None:
        raise IdentityError("give --provider eip155:CHAIN:REGISTRY/AGENT_ID or --config")
    from .registry import IdentityRegistryClient

    config, secret = _gateway(args.config)
    identity = config.identity
    if identity.identity_registry is None:
        raise IdentityError(f"{config.source}: [identity] identity_registry is not set")
    agent_id = identity.agent_id
    if not agent_id:
        from ..protocol.signing import address_of

        # As the gateway finds it: the agent whose wallet is the provider key.
        found = IdentityRegistryClient(_web3(config.chain.rpc_url), identity.identity_registry
                                       ).agents_with_wallet(address_of(secret))
        if not found:
            raise IdentityError("no agent has the provider key as its wallet yet: "
                                "nanotoll provider register")
        agent_id = found[0]
    return (AgentReference(config.chain.chain_id, identity.identity_registry, agent_id),
            config.chain.rpc_url, args.reputation or identity.reputation_registry)


def _cmd_show(args: argparse.Namespace) -> int:
    from .show import provider_report, render_report

    try:
        reference, rpc_url, reputation = _reference(args)
        report = provider_report(_web3(rpc_url), reference, reputation)
    except IdentityError as exc:
        return _fail(exc)
    print(json.dumps(report, indent=1, sort_keys=True) if args.json else render_report(report))
    return 0


def _cmd_feedback(args: argparse.Namespace) -> int:
    from ..device.provision import owner_account
    from ..device.repl import DeviceError
    from .feedback import check_payment, give_feedback
    from .fetch import fetch_document
    from .reference import parse_agent_reference
    from .registration import parse_registration
    from .registry import IdentityRegistryClient, ReputationRegistryClient

    try:
        reference = parse_agent_reference(args.provider)
        if not 0 <= args.score <= 100:
            raise IdentityError(f"--score {args.score}: a score is 0..100")
        w3 = _web3(args.rpc_url)
        if int(w3.eth.chain_id) != reference.chain_id:
            raise IdentityError(f"{reference} is on chain {reference.chain_id}, the node "
                                f"answers for chain {w3.eth.chain_id}")
        registry = IdentityRegistryClient(w3, reference.registry)
        registry.check_deployed()
        uri = registry.agent_uri(reference.agent_id)
        wallet = registry.agent_wallet(reference.agent_id)
        registration = parse_registration(fetch_document(uri))
        if wallet is None or registration.provider != wallet:
            raise IdentityError(f"the registration file at {uri} names provider "
                                f"{registration.provider}, the agent's wallet is {wallet}")
        reputation_address = args.reputation or registration.reputation_registry
        if not reputation_address:
            raise IdentityError("the registration file names no reputation registry: give "
                                "--reputation")
        reputation = ReputationRegistryClient(w3, reputation_address)
        if reputation.identity_registry() != reference.registry:
            raise IdentityError(f"the reputation registry {reputation.address} rates agents "
                                f"of {reputation.identity_registry()}, not of "
                                f"{reference.registry}")
        owner = owner_account(args.keystore)
        proof = check_payment(w3, registration.escrow, args.tx, owner.address, wallet)
        tx = give_feedback(reputation, owner, reference.agent_id, args.score, proof,
                           registration.broker_url)
    except (IdentityError, DeviceError) as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps({"feedback_tx": tx, "agent": str(reference), "score": args.score,
                          "payment_tx": args.tx, "channels": list(proof.channels),
                          "paid": proof.amount}))
    else:
        print(f"feedback {args.score} for agent {reference} sent in {tx} (proof: {args.tx} "
              f"paid {proof.amount} from channel(s) "
              f"{', '.join(map(str, proof.channels))})")
    return 0


def add_provider_commands(subparsers: Any) -> None:
    provider = subparsers.add_parser("provider", help="the provider's ERC-8004 identity")
    sub = provider.add_subparsers(dest="provider_command", required=True)

    deploy = sub.add_parser("deploy-registries",
                            help="deploy an identity and a reputation registry (development "
                                 "chains)")
    deploy.add_argument("--config", required=True, help="the gateway's config (chain, key)")
    deploy.add_argument("--json", action="store_true")
    deploy.set_defaults(func=_cmd_deploy)

    register = sub.add_parser("register", help="register the gateway as an agent, or bring "
                              "its URI and wallet up to date")
    register.add_argument("--config", required=True, help="the gateway's config")
    register.add_argument("--json", action="store_true")
    register.set_defaults(func=_cmd_register)

    show = sub.add_parser("show", help="identity, endpoints and feedback of a provider")
    show.add_argument("--provider", default=None, metavar="eip155:CHAIN:REGISTRY/AGENT_ID")
    show.add_argument("--config", default=None, help="or: the gateway's config")
    show.add_argument("--rpc-url", default="http://127.0.0.1:8545")
    show.add_argument("--reputation", default=None, help="the reputation registry (default: "
                      "the config's, else the registration file's)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_cmd_show)

    feedback = sub.add_parser("feedback", help="rate a provider, with the redeem that paid it")
    feedback.add_argument("--provider", required=True,
                          metavar="eip155:CHAIN:REGISTRY/AGENT_ID")
    feedback.add_argument("--rpc-url", default="http://127.0.0.1:8545")
    feedback.add_argument("--tx", required=True, help="the redeem transaction that paid the "
                          "provider from your channel")
    feedback.add_argument("--score", type=int, required=True, help="0..100")
    feedback.add_argument("--reputation", default=None, help="the reputation registry "
                          "(default: the registration file's)")
    feedback.add_argument("--keystore", default=None, help="the payer's keystore (else "
                          "NANOTOLL_OWNER_KEY)")
    feedback.add_argument("--json", action="store_true")
    feedback.set_defaults(func=_cmd_feedback)
