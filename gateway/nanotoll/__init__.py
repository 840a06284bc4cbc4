"""nanotoll: machine-to-machine micropayments settled in batches on an EVM chain."""

__version__ = "0.1.0"
