"""Owner tools: what the account that pays for devices does after provisioning.

- :mod:`.errors`: :class:`OwnerError`, a refusal that says which input is wrong and what to do.
- :mod:`.payer`: the payer's account from a keystore file or the environment, never a flag.
- :mod:`.selection`: channel ids from the command line (``7``, ``1-100,205``, ``@file``).
- :mod:`.funding`: open, top up, extend and reclaim channels, single or by the fleet; every
  channel is checked against the chain and every transaction estimated before the first
  one is sent.
- :mod:`.report`: channels as the chain holds them, with what a gateway's ledger accepted.
- :mod:`.policy`: the owner's signed spending policy: made from the channel on chain,
  signed, published retained on the device's policy topic and read back.
- :mod:`.cli`: ``nanotoll channel open | top-up | extend | reclaim | list | show`` and
  ``nanotoll device policy set | show``.
"""
