"""``nanotoll broker init DIR`` and ``nanotoll broker run DIR``."""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

from ..servers.process import ServiceError
from ..servers.tools import mosquitto_binary
from . import pki
from .site import BrokerSite, Listener, SiteError

ADDRESS = re.compile(r"(0x)?[0-9a-fA-F]{40}")


def _provider(text: str) -> str:
    """An address (a provider's or a device's) as broker usernames write it."""
    if not ADDRESS.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected an address, got {text!r}")
    return text.lower().removeprefix("0x")


def _fail(message: object) -> int:
    print(f"nanotoll: {message}", file=sys.stderr, flush=True)
    return 2


def _server_names(args: argparse.Namespace) -> list[str]:
    """The names the server certificate carries: those given, else the host listened
    on, or for a wildcard address this machine's name and loopback."""
    if args.server_name:
        return list(args.server_name)
    if args.host in ("0.0.0.0", "::"):
        return [socket.gethostname(), "localhost", "127.0.0.1"]
    return [args.host]


def _cmd_init(args: argparse.Namespace) -> int:
    if (args.ca_cert is None) != (args.ca_key is None):
        return _fail("--ca-cert and --ca-key go together")
    site = BrokerSite(Path(args.dir))
    try:
        ca = pki.load_authority(Path(args.ca_cert), Path(args.ca_key)) if args.ca_cert \
            else None
        site.init(Listener(args.host, args.port, None), hosts=_server_names(args),
                  providers=args.provider or [], ca=ca)
    except (SiteError, pki.PKIError) as exc:
        return _fail(exc)
    print(f"broker: {site.config_file} (TLS on {args.host}:{args.port}); clients verify it "
          f"with {site.ca_file}; admin password in {site.admin_password_file}")
    for provider in args.provider or []:
        print(f"broker: gateway of {provider}: username gateway-{provider}, password in "
              f"{site.gateway_password_file(provider)}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    site = BrokerSite(Path(args.dir))
    if not site.initialised():
        return _fail(f"{site.root} holds no broker: run `nanotoll broker init {site.root}`")
    try:
        pki.check_issued_by(site.server_cert_file, site.ca_file)
        binary = mosquitto_binary()
    except (pki.PKIError, ServiceError) as exc:
        return _fail(exc)
    # mosquitto takes this process's place: a supervisor's SIGTERM or Ctrl-C reaches it
    # directly, and nothing is left behind when it stops.
    sys.stdout.flush()
    os.execv(binary, [binary, "-c", str(site.config_file)])


def _cmd_revoke(args: argparse.Namespace) -> int:
    from .enrol import BrokerEnrolment, EnrolError

    try:
        site = BrokerSite(Path(args.dir))
        host, port = args.broker or _local(site.listener())
        revoked = BrokerEnrolment.from_folder(site.root, host, port).revoke(args.device)
    except (EnrolError, SiteError) as exc:
        return _fail(exc)
    print(f"broker: device {args.device} "
          f"{'revoked: disconnected and refused from now on' if revoked else 'had no client'}")
    return 0


def _local(listener: Listener) -> tuple[str, int]:
    """Where this host reaches the broker: loopback for a wildcard listener."""
    host = "127.0.0.1" if listener.host in ("0.0.0.0", "::") else listener.host
    return host, listener.port


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def add_broker_commands(commands: Any) -> None:
    broker = commands.add_parser("broker", help="the MQTT broker: TLS, per-client "
                                                "credentials and topic ACLs")
    sub = broker.add_subparsers(dest="broker_command", required=True)
    init = sub.add_parser("init", help="make a broker folder: CA, server certificate, "
                                       "config, admin and gateway credentials")
    init.add_argument("dir", help="the folder to make (must not hold a broker yet)")
    init.add_argument("--host", default="0.0.0.0", help="address to listen on (0.0.0.0)")
    init.add_argument("--port", type=int, default=8883, help="TLS port (8883)")
    init.add_argument("--server-name", action="append", metavar="NAME",
                      help="a host name or address clients reach the broker by (repeat; "
                           "the server certificate names each)")
    init.add_argument("--provider", action="append", type=_provider, metavar="ADDRESS",
                      help="make a gateway client for this provider (repeat)")
    init.add_argument("--ca-cert", default=None, help="the operator's own CA certificate")
    init.add_argument("--ca-key", default=None, help="... and its key (unencrypted PEM)")
    init.set_defaults(func=_cmd_init)
    run = sub.add_parser("run", help="start mosquitto with a broker folder's config")
    run.add_argument("dir", help="a folder made by `nanotoll broker init`")
    run.set_defaults(func=_cmd_run)
    revoke = sub.add_parser("revoke", help="delete a device's broker client: the broker "
                                           "disconnects it and refuses it from then on")
    revoke.add_argument("dir", help="the broker's folder (its admin password and CA)")
    revoke.add_argument("device", type=_provider, help="the device's address")
    revoke.add_argument("--broker", type=_host_port, default=None, metavar="HOST:PORT",
                        help="where the broker is (default: its listener, from this host)")
    revoke.set_defaults(func=_cmd_revoke)
