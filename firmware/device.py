# nanotoll device: build the agent from a board config (shared by every board's main.py).
#
# Config (JSON); relative paths are relative to the config file's folder:
# {
#   "key_file": "device.key",          32-byte secret as hex, made on the device (--init-key)
#   "chain_id": 31337,
#   "escrow": "0x...",                 the escrow contract (EIP-712 verifyingContract)
#   "channel": 1,
#   "provider": "0x...",               the payee; signs catalogs and receipts
#   "provider_key": "0x...",           its 64-byte public key x || y (optional): receipts
#                                      and catalogs are verified against it, not recovered
#   "comb_tables": "tables",           folder of the flash comb tables (optional; wallet.py)
#   "broker": {"host": "127.0.0.1", "port": 8883,
#              "username": "<device address>", "password": "...",  its broker client
#              "ca": "broker_ca.der"},   TLS, the broker checked against this CA (DER;
#                                        optional)
#   "policy": "policy.json",           a path, or the policy object inline (policy.py)
#   "owner": "0x...",                  the payer's address (optional): policies it signs
#                                      on nt/1/{provider}/policy/{device} replace "policy"
#   "state_dir": "state",              where the state record lives
#   "purchase_log": 64,                keep the last N purchases in purchases.log (optional)
#   "keepalive": 30,                   MQTT keepalive, seconds            (optional)
#   "timeout_ms": 15000,               one purchase, all retries included (optional)
#   "resend_ms": 4000                  re-send an unanswered request after (optional)
# }

import gc
import sys


def _boot_modules():
    # The boot=True modules of the firmware's manifest.py, in its order, read as text
    # rather than compiled, so nothing of it stays in the heap. It sits beside the
    # modules on sys.path: firmware/ when run from source, /lib after a flash, /rom
    # with --romfs. A manifest.py without them (a board's build manifest) is passed by.
    for folder in sys.path:
        try:
            lines = open((folder or ".") + "/manifest.py")
        except OSError:
            continue
        with lines:
            names = [line.split('"')[1][:-3] for line in lines
                     if line.startswith("module(") and "boot=True" in line]
        if names:
            return names
    raise ImportError("no firmware manifest.py on sys.path: flash the firmware again")


# The agent's modules, leaves first, with a collection after each: loading a .mpy
# leaves garbage (file and reader buffers, temporary names) between the code it
# keeps, and a module loaded on top of that garbage leaves holes behind once it is
# collected. Collected in between, each module fills the space the previous one's
# loading freed: the same code in less heap on the emulated board.
for _name in _boot_modules():
    gc.collect()
    __import__(_name)
gc.collect()
del _name, _boot_modules

import json
from binascii import hexlify, unhexlify
import wallet as W
from mqtt import MQTTClient
from store import Store
from policy import Policy
from agent import Agent


def _dirname(path):
    return path.rsplit("/", 1)[0] if "/" in path else "."


def _join(base, path):
    return path if path.startswith("/") else base + "/" + path


def load_config(path):
    with open(path) as f:
        cfg = json.load(f)
    base = _dirname(path)
    for key in ("key_file", "state_dir", "comb_tables"):
        if key in cfg:
            cfg[key] = _join(base, cfg[key])
    if isinstance(cfg.get("policy"), str):
        cfg["policy"] = _join(base, cfg["policy"])
    broker = cfg.get("broker")
    if broker and broker.get("ca"):
        broker["ca"] = _join(base, broker["ca"])
    cfg.setdefault("state_dir", _join(base, "state"))
    return cfg


def addr_bytes(text):
    text = text[2:] if text[:2] in ("0x", "0X") else text
    raw = unhexlify(text)
    if len(raw) != 20:
        raise ValueError("an address has 20 bytes")
    return raw


def checksum_address(raw):
    """EIP-55 mixed-case address text of 20 address bytes."""
    low = hexlify(raw).decode()
    h = hexlify(W.keccak256(low.encode())).decode()
    out = "0x"
    for i in range(40):
        c = low[i]
        out += c.upper() if c in "abcdef" and int(h[i], 16) >= 8 else c
    return out


def load_secret(cfg):
    if "key" in cfg:
        text = cfg["key"]
    else:
        with open(cfg["key_file"]) as f:
            text = f.read().strip()
    text = text[2:] if text[:2] in ("0x", "0X") else text
    secret = unhexlify(text)
    if len(secret) != 32 or not 1 <= int.from_bytes(secret, "big") < W.N:
        raise ValueError("device key must be 32 bytes in 1..n-1")
    return secret


def init_key(cfg, board):
    """Make the device key on the device (once); return its address. The key stays here."""
    path = cfg["key_file"]
    try:
        secret = load_secret(cfg)
        return checksum_address(W.address_of(secret)), False
    except OSError:
        pass
    secret = W.new_secret(board.randbytes)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(hexlify(secret).decode())
    import os

    os.rename(tmp, path)
    return checksum_address(W.address_of(secret)), True


def make_agent(cfg, board, log=None):
    secret = load_secret(cfg)
    provider = addr_bytes(cfg["provider"])
    trusted = W.use_tables(cfg.get("comb_tables"), provider, cfg.get("provider_key"),
                           log or (lambda *args: None))
    wallet = W.Wallet(secret, cfg["chain_id"], addr_bytes(cfg["escrow"]), trusted)
    policy_cfg = cfg.get("policy")
    policy = Policy.load(policy_cfg) if isinstance(policy_cfg, str) else Policy(policy_cfg)
    channel = cfg["channel"]
    store = Store(board.storage(cfg), channel)
    store.load()
    keeper = None
    if cfg.get("owner"):
        import owner_policy

        keeper = owner_policy.OwnerPolicy(board.storage(cfg), addr_bytes(cfg["owner"]), channel,
                                          wallet.separator)
        st = store.state
        if keeper.load(st.cumulative if st is not None else 0) is not None:
            policy = keeper.policy
        elif keeper.problem and log:
            log("agent: signed policy set aside (%s); the provisioned one holds" % keeper.problem)
    prov = hexlify(provider).decode()
    dev = hexlify(wallet.address).decode()
    will = ("nt/1/%s/status/%s" % (prov, dev), b"offline", True, 1)
    broker = cfg.get("broker") or {}
    client = MQTTClient(
        board.link(cfg),
        "nt-" + dev,
        keepalive=cfg.get("keepalive", 30),
        clean=False,
        will=will,
        user=broker.get("username"),
        password=broker.get("password"),
        timeout_ms=cfg.get("mqtt_timeout_ms", 5000),
        random=board.randbytes,
        log=log,
    )
    log_book = None
    if cfg.get("purchase_log"):
        import purchase_log

        log_book = purchase_log.PurchaseLog(board.storage(cfg) + "/purchases.log",
                                            cfg["purchase_log"])
        log_book.load()
    # The parsed config, hex strings and table checks are garbage by now: collected
    # here, the agent's long-lived objects fill those holes instead of new heap.
    gc.collect()
    return Agent(
        wallet,
        client,
        store,
        policy,
        provider,
        channel,
        clock=board.now,
        log=log,
        timeout_ms=cfg.get("timeout_ms", 15000),
        resend_ms=cfg.get("resend_ms", 4000),
        owner_policy=keeper,
        purchase_log=log_book,
    )


def board_main(board, config_path="/config.json", app=None):
    """Start the agent on a board at power-up.

    Without a key yet, make one (on the device; it never leaves) and print its
    address for the owner to open a channel, then stop. Otherwise bring the network
    up, start the agent (re-sending any request a power cut left unanswered) and
    hand it to `app` (a module with async fly(agent, plan, now)) or keep it idle.
    """
    import asyncio

    cfg = load_config(config_path)
    board.led(True)
    board.network_up(cfg)  # before the key: ESP32's urandom is truly random with Wi-Fi on
    address, made = init_key(cfg, board)
    if made or "channel" not in cfg:
        print("device address", address, "- open a channel for it, then set 'channel'")
        board.led(False)
        return None
    agent = make_agent(cfg, board, log=print)

    async def run():
        await agent.start()
        board.led(False)
        if app is not None:
            await app.fly(agent, app.PLAN, board.now())
        else:
            while True:
                await asyncio.sleep(60)

    asyncio.run(run())
    return agent
