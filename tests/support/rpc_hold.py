"""A JSON-RPC relay in front of a real node that can hold chosen methods.

Crash tests need a gateway frozen at a known point of a settlement round, holding the
settlement lease: the relay forwards every call to the node, except that calls to a held
method wait (the gateway's round blocks inside the lease) until :meth:`RpcHold.release`.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class RpcHold:
    """``url`` relays to ``upstream`` (from ``port``, or a free one); ``hold(methods)``
    makes those calls wait."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        self.upstream = upstream
        self._held: frozenset[str] = frozenset()
        self._released = threading.Event()
        self._released.set()
        self._forward_held = True
        self._lock = threading.Lock()
        self.waiting: dict[str, int] = {}  # held method -> calls waiting now
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # web3 keeps its connection alive

            def do_POST(self) -> None:  # noqa: N802 (the http.server hook's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = relay._relay(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per call would drown the test's output

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def hold(self, *methods: str) -> None:
        with self._lock:
            self._held = frozenset(methods)
            self._released.clear()

    def release(self, forward: bool = True) -> None:
        """Let the waiting calls go on to the node, or (``forward`` False: their caller
        was killed) drop them, so that only a live gateway's calls reach the node."""
        with self._lock:
            self._held = frozenset()
            self._forward_held = forward
            self._released.set()

    def _methods(self, body: bytes) -> set[str]:
        try:
            document = json.loads(body)
        except ValueError:
            return set()
        calls = document if isinstance(document, list) else [document]
        return {c.get("method", "") for c in calls if isinstance(c, dict)}

    def _relay(self, body: bytes) -> bytes:
        with self._lock:
            held = self._methods(body) & self._held
            for method in held:
                self.waiting[method] = self.waiting.get(method, 0) + 1
        if held:
            self._released.wait(120)
            with self._lock:
                for method in held:
                    self.waiting[method] -= 1
                if not self._forward_held:
                    return b'{"jsonrpc":"2.0","id":0,"error":{"code":-32000,"message":"dropped"}}'
        request = urllib.request.Request(self.upstream, data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: bytes = response.read()
        return answer

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RpcHold:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
