"""The provider's ERC-8004 identity: registration, discovery, reputation.

- :mod:`.errors`: :class:`IdentityError`, the one error.
- :mod:`.reference`: ``eip155:CHAIN:REGISTRY[/AGENT_ID]`` names.
- :mod:`.registration`: the registration file, built and parsed strictly.
- :mod:`.provider_file`: one gateway's file from its config and catalog.
- :mod:`.fetch`: reading an agent URI (http/https, bounded).
- :mod:`.retained`: one retained MQTT message (the catalog a file points at).
- :mod:`.registry`: the identity and reputation registries, the wallet's EIP-712 proof.
- :mod:`.register`: ``provider register``, step by step and idempotent.
- :mod:`.discovery`: a provider from its reference, or a refusal saying why.
- :mod:`.feedback`: proof of payment and the feedback that carries it.
- :mod:`.show`: the report ``provider show`` prints.
- :mod:`.cli`: the ``nanotoll provider`` commands.

It builds on the protocol and the chain. The gateway imports it for the file it serves;
the provider's tools here read the gateway's config (``provider_file``, ``cli``) and
nothing else of the gateway.
"""
