"""Product plugins for the loader and guard tests, named by ``support.sample_products:X``
in a config: one that works and one for each way a plugin can fail."""

from __future__ import annotations

import threading
from typing import Any

from nanotoll.gateway.serve.base import Param, Params, ProductContext
from nanotoll.protocol import cbor


class Echo:
    """Serves its params back with the time; counts its starts and stops."""

    name = "echo"
    price = 700
    description = "params echoed"
    params = {"n": Param("int", low=0, high=1000)}

    def __init__(self, context: ProductContext) -> None:
        self.name = context.name
        self.options = dict(context.options)
        self.started = self.stopped = 0

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        return cbor.dumps({"n": params["n"], "t": now, "tag": self.options.get("tag", "")})


class Raises(Echo):
    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        raise RuntimeError("the source is down")


class Hangs(Echo):
    """Blocks until released (the test releases it when it is done)."""

    def __init__(self, context: ProductContext) -> None:
        super().__init__(context)
        self.release = threading.Event()

    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        self.release.wait(30)
        return b"\xa0"


class TooLarge(Echo):
    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        return cbor.dumps({"blob": b"x" * 9000})


class NotBytes(Echo):
    def serve(self, params: Params, now: int, buyer: bytes) -> Any:
        return {"n": params["n"]}


class FailsToStart(Echo):
    def start(self) -> None:
        raise OSError("cannot open the data file")


class NoPrice:
    name = "noprice"
    description = ""
    params: dict[str, Param] = {}

    def __init__(self, context: ProductContext) -> None:
        pass

    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        return b"\xa0"
