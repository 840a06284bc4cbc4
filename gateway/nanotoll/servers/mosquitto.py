"""mosquitto 2 on a free loopback port, for tests, the demo, the benches and the fleet."""

from __future__ import annotations

from pathlib import Path

from .process import LOOPBACK, ManagedProcess, ServiceError, free_port, port_in_use, wait_for_port
from .tools import mosquitto_binary


class Mosquitto(ManagedProcess):
    """mosquitto 2 on loopback, anonymous, with persistence so restarts keep sessions."""

    name = "mosquitto"

    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.host = LOOPBACK
        self.port = port or free_port()
        self.binary = mosquitto_binary()

    def start(self) -> None:
        if port_in_use(self.port):
            raise ServiceError(f"port {self.port} is taken: stop what listens there or pick "
                               "another port")
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} {LOOPBACK}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            # Without it, Nagle's algorithm holds small QoS 1 packets ~40 ms on loopback.
            "set_tcp_nodelay true\n"
            "max_inflight_messages 200\n"
            "max_queued_messages 100000\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\n"
        )
        self.spawn([self.binary, "-c", str(config)])
        wait_for_port(self.port, self.process, 10, "mosquitto", self.log_path)

    def restart(self) -> None:
        """Stop and start on the same port and store: what a broker crash looks like."""
        self.stop()
        self.start()
