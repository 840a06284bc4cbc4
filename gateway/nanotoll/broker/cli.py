"""``nanotoll broker init | run | revoke | owner``: the broker's folder, mosquitto on it,
and its clients."""

from __future__ import annotations

import argparse
import json
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


def _cmd_owner(args: argparse.Namespace) -> int:
    from .clients import ensure_owner
    from .dynsec import DynsecAdmin, DynsecError

    username = args.owner[2:].lower()  # as the owner's tool logs in (owner/cli.py)
    try:
        site = BrokerSite(Path(args.dir))
        if not site.initialised():
            raise SiteError(f"{site.root} holds no broker: give the folder `nanotoll broker "
                            "init` made")
        host, port = args.broker or _local(site.listener())
        with DynsecAdmin(host, port, site.admin_password(),
                         ca_file=str(site.ca_file)) as admin:
            made, existed = ensure_owner(admin, username, rotate=args.rotate)
    except (DynsecError, SiteError) as exc:
        return _fail(f"cannot make the broker client of owner {args.owner}: {exc}")
    state = "exists" if made is None else "rotated" if existed else "created"
    if args.json:
        print(json.dumps({"owner": args.owner, "username": username, "state": state,
                          **({"password": made.password} if made else {})}, sort_keys=True))
        return 0
    if made is None:
        print(f"broker: owner {args.owner}: client {username} exists, its password "
              "unchanged (--rotate makes a new one)")
        return 0
    secret = Path(args.password_file) if args.password_file \
        else site.secrets / f"owner-{username}.password"
    try:
        _write_password(secret, made.password)
    except OSError as exc:
        return _fail(f"owner {args.owner}: client {username} {state}, but its password "
                     f"could not be written to {secret} ({exc.strerror}): run again with "
                     "--rotate")
    print(f"broker: owner {args.owner}: client {username} {state}, password in {secret} "
          f"(mode 0600); its tool sends it from NANOTOLL_BROKER_PASSWORD")
    return 0


def _write_password(path: Path, password: str) -> None:
    """Only the file's owner may read it, also when it existed with a looser mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(password + "\n")


def _owner(text: str) -> str:
    """The owner's account, EIP-55 checked like every address a person types."""
    from ..address import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    owner = sub.add_parser("owner", help="make an owner's broker client (username = its "
                                         "address): its tool publishes and reads back "
                                         "its devices' signed policies")
    owner.add_argument("dir", help="the broker's folder (its admin password and CA)")
    owner.add_argument("owner", type=_owner, help="the owner's address (0x...)")
    owner.add_argument("--broker", type=_host_port, default=None, metavar="HOST:PORT",
                       help="where the broker is (default: its listener, from this host)")
    owner.add_argument("--rotate", action="store_true",
                       help="give an existing client a new password (the old one is "
                            "refused from then on)")
    secret = owner.add_mutually_exclusive_group()
    secret.add_argument("--password-file", default=None, metavar="FILE",
                        help="where the new password goes, mode 0600 (default: "
                             "DIR/secrets/owner-{address}.password)")
    secret.add_argument("--json", action="store_true",
                        help="print one JSON document, the new password in it, and write "
                             "no file")
    owner.set_defaults(func=_cmd_owner)
