# nanotoll board layer: MicroPython's unix port (a development host or a Linux SBC).
#
# Every board module offers the same names:
#   NAME            board name
#   randbytes(n)    n bytes from the best random source
#   now()           unix seconds, or None when the clock is not set
#   link(cfg)       the MQTT transport (an object with async open() and close())
#   storage(cfg)    directory of the state record
#   led(on)         status LED (no-op where there is none)
#   network_up(cfg) bring the network up (Wi-Fi on boards that have it)

import os
import time
from tcp_link import TcpLink, broker_tls
from tls_stream import TlsStream

NAME = "unix"


def randbytes(n):
    return os.urandom(n)


def now():
    return int(time.time())


def network_up(cfg):
    pass


def link(cfg):
    broker = cfg.get("broker", {})
    return TcpLink(broker.get("host", "127.0.0.1"), broker.get("port", 1883),
                   broker_tls(broker), broker.get("ca"), TlsStream)


def _mkdirs(path):
    cur = "/" if path.startswith("/") else ""
    for name in path.split("/"):
        if not name:
            continue
        cur = cur + name if (not cur or cur.endswith("/")) else cur + "/" + name
        try:
            os.mkdir(cur)
        except OSError:
            pass


def storage(cfg):
    path = cfg["state_dir"]
    _mkdirs(path)
    return path


def led(on):
    pass
