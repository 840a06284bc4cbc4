"""Prometheus metrics: counters and a latency histogram, served as text on loopback.

No client library: the exposition format is a few lines of text. One :class:`Metrics`
object per gateway (no module-level registry); :class:`MetricsServer` serves it.
"""

from __future__ import annotations

import base64
import hmac
import threading
import time
from bisect import bisect_left
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LATENCY_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 250, 1000)
RECENT = 20_000  # requests kept for the dashboard's rates and percentiles

Page = Callable[[], tuple[str, bytes]]  # () -> (content type, body)


@dataclass(frozen=True, slots=True)
class Answered:
    """One answered request, as the dashboard counts it."""

    at: float  # unix seconds
    latency_ms: float
    code: str
    product: str  # "" when the request did not decode that far
    increment: int


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[str, int] = defaultdict(int)  # by response code name
        self.purchases = 0
        self.revenue = 0
        self.replays = 0
        self._buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self._latency_sum = 0.0
        self._latency_count = 0
        self.gauges: dict[str, Callable[[], float]] = {}
        self.revenue_by_product: dict[str, int] = defaultdict(int)
        self.purchases_by_product: dict[str, int] = defaultdict(int)
        self.started = time.time()
        self._recent: deque[Answered] = deque(maxlen=RECENT)

    def observe(self, code: str, latency_ms: float, increment: int = 0,
                replay: bool = False, product: str = "") -> None:
        with self._lock:
            self.requests[code] += 1
            self._recent.append(Answered(time.time(), latency_ms, code, product, increment))
            if increment:
                self.purchases += 1
                self.revenue += increment
                self.revenue_by_product[product] += increment
                self.purchases_by_product[product] += 1
            if replay:
                self.replays += 1
            self._buckets[bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1  # first b >= ms
            self._latency_sum += latency_ms
            self._latency_count += 1

    def recent(self, since: float = 0.0) -> list[Answered]:
        """The requests answered at or after ``since`` (of the last RECENT)."""
        with self._lock:
            return [answered for answered in self._recent if answered.at >= since]

    def counters(self) -> dict[str, Any]:
        """The process's totals since it started, as one consistent copy."""
        with self._lock:
            return {"started": self.started, "requests": dict(self.requests),
                    "purchases": self.purchases, "revenue": self.revenue,
                    "replays": self.replays,
                    "revenue_by_product": dict(self.revenue_by_product),
                    "purchases_by_product": dict(self.purchases_by_product)}

    def render(self) -> str:
        with self._lock:
            lines = [
                "# TYPE nanotoll_requests_total counter",
                *(f'nanotoll_requests_total{{code="{c}"}} {n}' for c, n in
                  sorted(self.requests.items())),
                "# TYPE nanotoll_purchases_total counter",
                f"nanotoll_purchases_total {self.purchases}",
                "# TYPE nanotoll_revenue_units_total counter",
                f"nanotoll_revenue_units_total {self.revenue}",
                "# TYPE nanotoll_replays_total counter",
                f"nanotoll_replays_total {self.replays}",
                "# TYPE nanotoll_verify_latency_ms histogram",
            ]
            cumulative = 0
            for bound, count in zip((*LATENCY_BUCKETS_MS, "+Inf"), self._buckets, strict=True):
                cumulative += count
                lines.append(f'nanotoll_verify_latency_ms_bucket{{le="{bound}"}} {cumulative}')
            lines += [f"nanotoll_verify_latency_ms_sum {self._latency_sum:.3f}",
                      f"nanotoll_verify_latency_ms_count {self._latency_count}"]
            gauges = dict(self.gauges)
        for name, read in sorted(gauges.items()):
            try:
                value: Any = read()
            except Exception:  # a gauge that cannot be read is left out, not fatal
                continue
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"


class MetricsServer:
    """``GET /metrics`` on ``host:port`` in a daemon thread; ``close`` stops it. With
    ``login`` (user, password), a request without that HTTP basic auth gets 401.
    ``pages`` (path -> content type and body) are served behind the same login: the
    operator's dashboard.
    ``documents`` (path -> JSON body) are public: the ERC-8004 registration file is read
    by whoever wants to discover the provider, without the operator's login."""

    def __init__(self, metrics: Metrics, port: int, host: str = "127.0.0.1",
                 login: tuple[str, str] | None = None,
                 documents: Mapping[str, Callable[[], bytes]] | None = None,
                 pages: Mapping[str, Page] | None = None) -> None:
        public = dict(documents or {})
        private = dict(pages or {})  # behind the login, as /metrics is
        expected = b"Basic " + base64.b64encode(f"{login[0]}:{login[1]}".encode()) \
            if login is not None else None

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                document = public.get(self.path.split("?")[0])
                if document is not None:
                    self._send_json(document)
                    return
                given = self.headers.get("Authorization", "").encode()
                if expected is not None and not hmac.compare_digest(given, expected):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="nanotoll metrics"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                page = private.get(self.path.split("?")[0])
                if page is not None:
                    self._send_page(page)
                    return
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = metrics.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _send_page(self, page: Page) -> None:
                try:
                    content_type, body = page()
                except LookupError as exc:  # a file the page needs is not installed
                    self.send_error(404, str(exc))
                    return
                except Exception:  # cannot be made now (the ledger away)
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _send_json(self, document: Callable[[], bytes]) -> None:
                try:
                    body = document()
                except Exception:  # a document that cannot be made now: not the listener's end
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
