"""Local servers for tests, the demo, the benches and the fleet, each on a free loopback
port: real processes started by a ``with`` block and always stopped at its end.

- :mod:`.process`: the plumbing (:class:`~.process.ManagedProcess`, free ports,
  ``stop_process``, SIGTERM as Ctrl-C);
- :mod:`.tools`: the repository root and where each installed tool is found;
- :mod:`.mosquitto`, :mod:`.postgres`, :mod:`.anvil`: the broker, the ledger database and
  the chain;
- :mod:`.gateway`: the gateway itself as a child process, with its config file.

Nothing here is imported by the gateway at run time.
"""
