"""``nanotoll device provision``, ``status`` and ``buy``: over the board's REPL.

Provisioning: the board makes its key from its own random source (the key never
leaves it: only the address comes back); the owner's account opens and funds a
channel for that address on-chain; then the channel, gateway and policy config is
written to the board as ``/config.json`` (temporary file, then an atomic rename).

A board that already has a key is refused unless ``rotate``: then a new key replaces
the old one, a new channel is opened for it, and the board's state record for the old
channel is removed. The old channel stays open on-chain with its deposit: the gateway
can still redeem the vouchers it holds for it until its expiry, after which the owner
reclaims the rest (``EscrowClient.reclaim``). Nothing signs for it any more.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..broker.enrol import BrokerEnrolment, EnrolError
from .boards import BoardSpec
from .repl import BoardExecError, DeviceError, Repl

KEY_FILE = "/device.key"
NEW_KEY_FILE = "/device.key.new"
CONFIG_FILE = "/config.json"
BROKER_CA_FILE = "/broker_ca.der"
STATE_DIR = "/state"
DEFAULT_LIFETIME = 7 * 86400
DEFAULT_EXPIRY_MARGIN = 3600

OWNER_KEY_ENV = "NANOTOLL_OWNER_KEY"
# Purchases the board keeps in its log (213 bytes each on flash).
PURCHASE_LOG_ENTRIES = 64
KEYSTORE_PASSWORD_ENV = "NANOTOLL_KEYSTORE_PASSWORD"
WIFI_PASSWORD_ENV = "NANOTOLL_WIFI_PASSWORD"


@dataclass
class ProvisionRequest:
    rpc_url: str
    escrow: str
    token: str
    provider: str
    deposit: int
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    lifetime: int = DEFAULT_LIFETIME
    budget: int | None = None
    max_unit_price: int | None = None
    policy_extra: Mapping[str, Any] | None = None
    wifi_ssid: str | None = None
    wifi_password: str | None = None
    rotate: bool = False
    provider_key: str | None = None  # its 64-byte public key x || y, as hex
    # The operator's broker: the board gets a client of its own there and the CA.
    # None: a broker without credentials (a plain one on a test bench).
    broker: BrokerEnrolment | None = None


@dataclass
class ProvisionResult:
    address: str
    channel: int
    deposit: int
    expiry: int
    rotated_from: dict[str, Any] | None


def owner_account(keystore: str | None, env: Mapping[str, str] = os.environ) -> Any:
    """The owner's account: a keystore file (password from the environment or a prompt)
    or a raw key in NANOTOLL_OWNER_KEY. Never from the command line."""
    from eth_account import Account

    if keystore:
        path = Path(keystore)
        if not path.exists():
            raise DeviceError(f"keystore {path} does not exist")
        password = env.get(KEYSTORE_PASSWORD_ENV)
        if password is None:
            import getpass
            import sys

            if not sys.stdin.isatty():
                raise DeviceError(f"set {KEYSTORE_PASSWORD_ENV} to the keystore's password "
                                  "(no terminal to ask on)")
            password = getpass.getpass(f"password for {path}: ")
        try:
            key = Account.decrypt(json.loads(path.read_text()), password)
        except (ValueError, KeyError) as exc:
            raise DeviceError(f"cannot decrypt {path}: {exc}") from exc
        return Account.from_key(key)
    raw = env.get(OWNER_KEY_ENV)
    if not raw:
        raise DeviceError(f"no owner key: pass --keystore FILE or set {OWNER_KEY_ENV} "
                          "(the key is never taken from the command line)")
    try:
        return Account.from_key(raw)
    except (ValueError, TypeError) as exc:
        raise DeviceError(f"{OWNER_KEY_ENV} is not a private key: {exc}") from exc


# Board side snippets -------------------------------------------------------------

_PRESENT = """
import os, json
def _ex(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False
_c = None
try:
    with open({config!r}) as f:
        _c = json.load(f)
except (OSError, ValueError):
    pass
print(json.dumps({{"key": _ex({key!r}), "new_key": _ex({new_key!r}), "config": _c,
    "firmware": _ex('/lib/device.mpy') or _ex('/lib/device.py')}}))
del _ex, _c
"""

_MAKE_KEY = """
import json, board, device
_a, _m = device.init_key({{"key_file": {path!r}}}, board)
print(json.dumps({{"address": _a, "made": _m}}))
del _a, _m
"""

_INSTALL = """
import os
def _rm(p):
    try:
        for n in os.listdir(p):
            _rm(p + '/' + n)
        os.rmdir(p)
    except OSError:
        try:
            os.remove(p)
        except OSError:
            pass
if {wipe_state!r}:
    _rm({state!r})
os.rename({new_key!r}, {key!r})
{ca_rename}os.rename({config_tmp!r}, {config!r})
del _rm
"""

_STATUS = """
import json, device
from store import Store
_c = device.load_config({config!r})
_p = _c.get("policy") or {{}}
if isinstance(_p, str):
    with open(_p) as f:
        _p = json.load(f)
_s = Store(_c["state_dir"], _c["channel"])
_s.load()
_t = _s.state
print(json.dumps({{"device": _c.get("device"), "channel": _c["channel"],
    "provider": _c.get("provider"), "budget": _p.get("budget"), "deposit": _p.get("deposit"),
    "expiry": _p.get("expiry"), "corrupt": _s.corrupt,
    "spent": _t.spent if _t else None, "cumulative": _t.cumulative if _t else None,
    "acked": _t.acked if _t else None, "request_id": _t.request_id if _t else None,
    "pending": bool(_t.pending) if _t else None,
    "by_product": _t.by_product if _t else None}}))
del _c, _p, _s, _t
"""

_BUY = """
import json, asyncio, board, device, errors
_c = device.load_config({config!r})
_agent = device.make_agent(_c, board)
async def _run():
    board.network_up(_c)
    await _agent.start()
    try:
        for _i in range(1, {count} + 1):
            _now = board.now()
            _params = {params!r}
            if _params is None:
                _params = {{"lat": 52520008, "lon": 13404954, "alt": 120, "t": _now or 0}}
            _line = {{"i": _i, "product": {product!r}}}
            try:
                _data = await _agent.buy({product!r}, _params, max_price={max_price!r})
                _line.update({{"ok": True, "cumulative": _agent.state.cumulative,
                    "price": _agent.last_price, "data_bytes": len(_data),
                    "receipt_cumulative": _agent.receipt[1]}})
            except errors.AgentError as _e:
                _line.update({{"ok": False, "error": errors.error_code(_e), "message": str(_e)}})
            print(json.dumps(_line))
    finally:
        await _agent.stop()
asyncio.run(_run())
del _c, _agent, _run
"""


COMB_TABLES = "/tables"


def check_provider_key(provider: str, public_hex: str) -> str:
    """The provider's public key as the board's config holds it (0x and 128 hex digits),
    after checking that it hashes to the provider's address: a wrong key is refused here
    as the board refuses it at boot."""
    from ..protocol.keccak import keccak256

    text = public_hex[2:] if public_hex[:2] in ("0x", "0X") else public_hex
    try:
        public = bytes.fromhex(text)
    except ValueError as exc:
        raise DeviceError(f"--provider-key is not hex: {exc}") from exc
    if len(public) == 65 and public[0] == 4:
        public = public[1:]  # the uncompressed SEC1 form
    if len(public) != 64:
        raise DeviceError("--provider-key: a public key is 64 bytes x || y (or 65 with 04)")
    address = provider[2:] if provider[:2] in ("0x", "0X") else provider
    if keccak256(public)[12:].hex() != address.lower():
        raise DeviceError(f"--provider-key does not hash to the provider's address {provider}")
    return "0x" + public.hex()


def _chain(request: ProvisionRequest) -> tuple[Any, Any]:
    from web3 import Web3

    from ..chain.client import EscrowClient

    w3 = Web3(Web3.HTTPProvider(request.rpc_url, request_kwargs={"timeout": 30}))
    if not w3.is_connected():
        raise DeviceError(f"no Ethereum node answers at {request.rpc_url}")
    return w3, EscrowClient(w3, request.escrow, request.token)


def provision(repl: Repl, spec: BoardSpec, request: ProvisionRequest, owner: Any,
              say: Callable[[str], None] = print) -> ProvisionResult:
    present = repl.exec_json(_PRESENT.format(config=CONFIG_FILE, key=KEY_FILE,
                                             new_key=NEW_KEY_FILE))
    if not present["firmware"]:
        raise DeviceError("the board has no nanotoll firmware: run `nanotoll device flash` "
                          "first")
    old = present["config"]
    if present["key"] and not request.rotate:
        where = f" (channel {old['channel']})" if old and "channel" in old else ""
        raise DeviceError(
            f"the board already has a key{where}: refusing to replace it. Pass --rotate to "
            "make a new key and channel; the old channel then keeps its deposit until its "
            "expiry (the gateway can still redeem what the board signed), and the owner "
            "reclaims the rest after that.")
    provider_key = (check_provider_key(request.provider, request.provider_key)
                    if request.provider_key else None)
    if request.budget is not None and request.budget > request.deposit:
        raise DeviceError(f"--budget {request.budget} is above the deposit {request.deposit}")
    if spec.wifi and not request.wifi_ssid:
        raise DeviceError(f"{spec.name} reaches the broker over Wi-Fi: pass --wifi-ssid "
                          f"(and set {WIFI_PASSWORD_ENV})")
    w3, escrow = _chain(request)
    balance = escrow.balance_of(owner.address)
    if balance < request.deposit:
        raise DeviceError(f"the owner {owner.address} holds {balance:,} units of the token, "
                          f"less than the deposit {request.deposit:,}")

    # The key: made on the board, under a temporary name until everything else is done.
    if present["new_key"]:
        repl.exec(f"import os\nos.remove({NEW_KEY_FILE!r})")
    made = repl.exec_json(_MAKE_KEY.format(path=NEW_KEY_FILE), timeout=120)
    address = str(made["address"])
    say(f"provision: the board made its key; address {address}")
    device_hex = address.lower().removeprefix("0x")
    enrolled = False
    try:
        # The broker first: a broker that is down or refuses stops provisioning before
        # anything happens on-chain or on the board.
        if request.broker is not None:
            try:
                credentials = request.broker.enrol(_hex(request.provider), device_hex,
                                                   _hex(owner.address))
            except EnrolError as exc:
                raise DeviceError(str(exc)) from exc
            enrolled = True
            say(f"provision: broker client {credentials.username} made on "
                f"{request.broker.host}:{request.broker.port}")
        expiry = int(w3.eth.get_block("latest")["timestamp"]) + request.lifetime
        channel, receipt = escrow.open_channel(owner, address, request.provider,
                                               request.deposit, expiry)
        say(f"provision: channel {channel} opened with {request.deposit:,} units by "
            f"{owner.address} (tx {receipt['transactionHash'].hex()})")
        policy: dict[str, Any] = {
            "deposit": request.deposit,
            "budget": request.budget if request.budget is not None else request.deposit,
            "expiry": expiry,
            "expiry_margin": min(DEFAULT_EXPIRY_MARGIN, request.lifetime // 4),
        }
        if request.max_unit_price is not None:
            policy["max_unit_price"] = request.max_unit_price
        policy.update(request.policy_extra or {})
        config: dict[str, Any] = {
            "key_file": KEY_FILE, "chain_id": int(w3.eth.chain_id), "escrow": escrow.address,
            "channel": channel, "provider": request.provider, "device": address,
            "broker": {"host": request.broker_host, "port": request.broker_port},
            "policy": policy, "state_dir": STATE_DIR, "keepalive": 30, "timeout_ms": 30000,
            "provisioned": int(time.time()),
            # whose signed policies the board applies (docs/protocol.md 3.5)
            "owner": owner.address,
            "purchase_log": PURCHASE_LOG_ENTRIES,
        }
        if provider_key:
            # receipts verified against the key, with comb tables the board builds once
            config["provider_key"] = provider_key
            config["comb_tables"] = COMB_TABLES
        if spec.wifi:
            config["wifi"] = {"ssid": request.wifi_ssid, "password": request.wifi_password or ""}
        ca_rename = ""
        if request.broker is not None:
            config["broker"].update(username=credentials.username,
                                    password=credentials.password, ca=BROKER_CA_FILE)
            repl.write_file(BROKER_CA_FILE + ".tmp", request.broker.ca_der())
            ca_rename = f"os.rename({BROKER_CA_FILE + '.tmp'!r}, {BROKER_CA_FILE!r})\n"
        repl.write_file(CONFIG_FILE + ".tmp", json.dumps(config).encode())
        repl.exec(_INSTALL.format(wipe_state=bool(present["key"]), state=STATE_DIR,
                                  new_key=NEW_KEY_FILE, key=KEY_FILE, ca_rename=ca_rename,
                                  config_tmp=CONFIG_FILE + ".tmp", config=CONFIG_FILE))
    except BaseException:
        with contextlib.suppress(DeviceError):
            temporary = (NEW_KEY_FILE, CONFIG_FILE + ".tmp", BROKER_CA_FILE + ".tmp")
            repl.exec(f"import os\nfor _p in {temporary!r}:\n"
                      "    try:\n        os.remove(_p)\n    except OSError:\n        pass")
        if enrolled and request.broker is not None:
            with contextlib.suppress(EnrolError):
                request.broker.revoke(device_hex)  # a client for a key that never served
        raise
    if present["key"] and request.broker is not None and old and old.get("device"):
        # The old key is gone from the board: its broker client goes too.
        previous = _hex(str(old["device"]))
        if previous != device_hex:
            try:
                revoked = request.broker.revoke(previous)
            except EnrolError as exc:
                raise DeviceError(f"the board now uses {address}, but revoking the old "
                                  f"device's broker client failed: {exc}; revoke it with "
                                  f"`nanotoll broker revoke DIR {previous}`") from exc
            say(f"provision: broker client {previous} "
                f"{'revoked' if revoked else 'was not on the broker'}")
    if present["key"]:
        say(f"provision: rotated: the old key is gone; its channel "
            f"{old.get('channel') if old else '?'} stays open until its expiry (the gateway "
            "may still redeem its vouchers), then reclaim the rest")
    say(f"provision: wrote {CONFIG_FILE} (channel {channel}, budget {policy['budget']:,}, "
        f"expiry {expiry})")
    return ProvisionResult(address, channel, request.deposit, expiry,
                           old if present["key"] else None)


def _hex(address: str) -> str:
    """An address as topics and broker usernames write it: lowercase, no 0x."""
    return address.lower().removeprefix("0x")


def status(repl: Repl) -> dict[str, Any]:
    try:
        return dict(repl.exec_json(_STATUS.format(config=CONFIG_FILE)))
    except BoardExecError as exc:
        if "ENOENT" in exc.board_error or "Errno 2" in exc.board_error:
            raise DeviceError("the board is not provisioned (no /config.json, or no "
                              "firmware): run `nanotoll device flash` and "
                              "`nanotoll device provision`") from exc
        raise


def buy(repl: Repl, product: str, count: int, max_price: int | None = None,
        params: Mapping[str, Any] | None = None, timeout: float = 300.0) -> list[dict[str, Any]]:
    code = _BUY.format(config=CONFIG_FILE, count=int(count), product=product,
                       max_price=max_price, params=dict(params) if params else None)
    out = repl.exec(code, timeout=timeout)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]
