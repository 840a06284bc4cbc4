"""A loaded product: its plugin behind the checks the gateway owes every request.

``validate`` applies the plugin's params schema, then its optional ``check``. ``serve``
runs the plugin's ``serve`` on a worker thread of the product's own and waits at most the
product's time-out: a plugin that hangs costs its own requests a ``PROVIDER_ERROR``, while
the gateway (and every other product) keeps serving. A plugin that raises or returns
something other than bytes is a ``PROVIDER_ERROR`` too; the serve stage refuses an answer
too large for a response. The worker is a daemon thread, so a hung plugin never holds up
the process's exit.

The built-ins run ``inline``, in the caller's thread: they are the gateway's own bounded
code, and handing each request to a worker thread and back costs more than they take to
serve. Their failures are still ``PROVIDER_ERROR``; only the time-out is not enforced for
them.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from ...protocol.errors import ErrorCode, ProtocolError
from .base import Params, ProductPlugin
from .params import check_params

DEFAULT_TIMEOUT = 2.0  # seconds a plugin's serve may take


@dataclass(slots=True, eq=False)
class _Call:
    params: Params
    now: int
    buyer: bytes
    done: threading.Event = field(default_factory=threading.Event)
    data: bytes | None = None
    error: BaseException | None = None


class GuardedProduct:
    def __init__(self, name: str, plugin: ProductPlugin, timeout: float = DEFAULT_TIMEOUT,
                 inline: bool = False) -> None:
        self.name = name
        self.plugin = plugin
        self.timeout = timeout
        self.inline = inline
        self._check = getattr(plugin, "check", None)
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        if not inline:
            threading.Thread(target=self._work, name=f"product-{name}", daemon=True).start()

    def validate(self, params: Params, now: int) -> None:
        check_params(self.plugin.params, params)
        if self._check is not None:
            self._check(params, now)

    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        if self.inline:
            try:
                data: Any = self.plugin.serve(params, now, buyer)
            except Exception as exc:
                raise self._failed(exc) from exc
            if not isinstance(data, bytes | bytearray):
                raise self._failed(TypeError(f"serve returned {type(data).__name__}"))
            return bytes(data)
        call = _Call(params, now, buyer)
        self._calls.put(call)
        if not call.done.wait(self.timeout):
            raise ProtocolError(ErrorCode.PROVIDER_ERROR,
                                f"{self.name} did not answer within {self.timeout:g} s")
        if call.error is not None:
            raise self._failed(call.error)
        assert call.data is not None
        return call.data

    def _failed(self, error: BaseException) -> ProtocolError:
        if isinstance(error, ProtocolError):
            return error
        return ProtocolError(ErrorCode.PROVIDER_ERROR,
                             f"{self.name} failed: {type(error).__name__}")

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            self._run(call)

    def _run(self, call: _Call) -> None:
        try:
            data: Any = self.plugin.serve(call.params, call.now, call.buyer)
            if not isinstance(data, bytes | bytearray):
                raise TypeError(f"serve returned {type(data).__name__}, not bytes")
            call.data = bytes(data)
        except Exception as exc:  # any failure is the plugin's, answered PROVIDER_ERROR
            call.error = exc
        call.done.set()

    def close(self) -> None:
        """End the worker (after the call it runs, if any) and stop the plugin."""
        if not self.inline:
            self._calls.put(None)
        stop = getattr(self.plugin, "stop", None)
        if stop is not None:
            stop()
