# nanotoll fleet: many devices in one MicroPython process (the unix port).
#
#   micropython -X heapsize=N boards/unix/fleet.py --plan PLAN.json --init-keys
#       every device of the plan makes its own key (once) in its folder; one JSON line
#       per device: {"index": i, "address": "0x..."}
#   micropython -X heapsize=N boards/unix/fleet.py --plan PLAN.json --run
#       build one agent per device (each its own key, state record, policy and MQTT
#       session), connect them all, print {"ready": ...}, wait for the plan's go file,
#       buy at the plan's rate until its duration is over, then one summary line per
#       device and a last {"done": ...} line
#
# Every agent is the real firmware (device.make_agent: wallet, store, policy, mqtt,
# agent); only the scheduling of purchases is this file's. One asyncio loop runs them all.
#
# PLAN.json:
# {
#   "common": {"chain_id": ..., "escrow": "0x..", "provider": "0x..",
#              "broker": {"host": "127.0.0.1", "port": 1883},
#              "policy": {...}, "keepalive": 60, "timeout_ms": 60000, "resend_ms": 4000},
#   "devices": [{"index": 7, "dir": "/run/devices/0007", "channel": 8,
#                "login": ["<its address>", "<its broker password>"]}, ...],
#   "rate": 0.2,                      purchases per second per device
#   "duration": 60,                   seconds of purchasing at the rate
#   "warmup": 10,                     seconds before that: one purchase per device, spread
#                                     over the first half (the gateway reads each new
#                                     channel from the chain once); lines carry "w": 1
#   "products": ["weather", "nav", "route"],
#   "go": "/run/go",                  purchasing starts when this file exists
#   "connect_batch": 25               agents connecting at once
# }
#
# Output, one JSON object a line on stdout:
#   {"d": index, "p": product, "t": ms since go, "us": latency, "ok": 1, "c": cumulative,
#    "pr": price, "e": null, "late": ms behind schedule}          one purchase
#   {"d": index, "rec": cumulative}    a request that had failed was answered later
#   {"sum": index, ...}                the device's own record at the end
#   {"ready": n, "heap_*": ...} / {"done": n, ...}

import sys

_here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, _here + "/../../firmware")
sys.path.insert(0, _here)

import gc
import json
import os
import time
import asyncio
from time import ticks_ms, ticks_us, ticks_diff, ticks_add

gc.collect()
_HEAP_BEFORE_IMPORT = gc.mem_free()

import board
import device
import errors

gc.collect()
_HEAP_AFTER_IMPORT = gc.mem_free()

# 0.618... spreads the devices' first purchases evenly over one period
_GOLDEN = 0.6180339887


def out(obj):
    print(json.dumps(obj))


def device_config(common, dev):
    cfg = {}
    for key in common:
        cfg[key] = common[key]
    base = dev["dir"]
    cfg["key_file"] = base + "/device.key"
    cfg["state_dir"] = base + "/state"
    if "channel" in dev:
        cfg["channel"] = dev["channel"]
    if "login" in dev:  # its own broker client
        broker = dict(common["broker"])
        broker["username"], broker["password"] = dev["login"]
        cfg["broker"] = broker
    return cfg


def params_for(product, index, now):
    # Positions spread the fleet over a 1-degree square; values stay in the products' ranges.
    lat = 52000000 + (index * 7919) % 1000000
    lon = 13000000 + (index * 104729) % 1000000
    if product == "weather":
        return {"lat": lat, "lon": lon, "alt": 120 + index % 200, "t": now}
    if product == "nav":
        return {"box": [lat - 20000, lon - 20000, lat + 20000, lon + 20000]}
    if product == "route":
        return {"corridor": "FLT-%d" % index, "from": now, "until": now + 900}
    return {}


def init_keys(plan):
    for dev in plan["devices"]:
        cfg = device_config(plan["common"], dev)
        board._mkdirs(dev["dir"])
        address, made = device.init_key(cfg, board)
        out({"index": dev["index"], "address": address, "created": made})
    return 0


class Sim:
    """One simulated device: its agent and its purchase schedule."""

    def __init__(self, index, agent):
        self.index = index
        self.agent = agent
        self.ok = 0
        self.failed = 0
        self.paid = 0
        self.recovered = 0

    async def fly(self, products, period_ms, go, start, end, phase_ms, warm_ms):
        agent = self.agent
        k = 0
        n = len(products)
        turn = self.index % n
        warm = warm_ms >= 0
        due = ticks_add(go, warm_ms) if warm else ticks_add(start, phase_ms)
        while ticks_diff(end, due) > 0:
            wait = ticks_diff(due, ticks_ms())
            if wait > 0:
                await asyncio.sleep_ms(wait)
            started = ticks_ms()
            late = ticks_diff(started, due)
            product = products[(turn + k) % n]
            st = agent.state
            pending_cum = st.cumulative if (st is not None and st.pending) else 0
            line = {"d": self.index, "p": product, "t": ticks_diff(started, go), "late": late}
            if warm:
                line["w"] = 1
            t0 = ticks_us()
            try:
                await agent.buy(product, params_for(product, self.index, board.now()))
                us = ticks_diff(ticks_us(), t0)
                self.ok += 1
                self.paid += agent.last_price
                line["ok"] = 1
                line["c"] = agent.receipt[1]
                line["pr"] = agent.last_price
                line["e"] = None
            except errors.AgentError as exc:
                us = ticks_diff(ticks_us(), t0)
                self.failed += 1
                st = agent.state
                line["ok"] = 0
                line["e"] = errors.error_code(exc)
                line["m"] = str(exc)[:120]
                line["pr"] = agent.last_price
                # the voucher this purchase signed, when it is still unanswered
                line["c"] = st.cumulative if (st is not None and st.pending) else None
            line["us"] = us
            st = agent.state
            if pending_cum and st is not None and st.acked >= pending_cum:
                # An earlier purchase that had failed unanswered was answered and charged.
                self.recovered += 1
                out({"d": self.index, "rec": pending_cum})
            out(line)
            k += 1
            if warm:
                # the warm-up purchase done: the schedule proper starts after the warm-up
                warm = False
                due = ticks_add(start, phase_ms)
                continue
            due = ticks_add(due, period_ms)
            if ticks_diff(due, ticks_ms()) < -period_ms:
                # Far behind (a long outage): skip the missed slots, do not burst.
                due = ticks_ms()

    def summary(self):
        agent = self.agent
        st = agent.state
        s = {
            "sum": self.index,
            "address": device.checksum_address(agent.wallet.address),
            "channel": agent.channel,
            "ok": self.ok,
            "failed": self.failed,
            "paid": self.paid,
            "recovered": self.recovered,
            "connects": agent.client.connects,
            "retransmits": agent.client.retransmits,
            "resyncs": agent.resyncs,
        }
        if st is None:
            s["corrupt"] = agent.store.corrupt
        else:
            s["cumulative"] = st.cumulative
            s["acked"] = st.acked
            s["spent"] = st.spent
            s["pending"] = 1 if st.pending else 0
            s["by_product"] = st.by_product
        return s


def heap_used():
    gc.collect()
    return gc.mem_alloc()


async def start_all(sims, batch):
    async def one(sim):
        await sim.agent.start()

    i = 0
    while i < len(sims):
        group = [asyncio.create_task(one(s)) for s in sims[i : i + batch]]
        for task in group:
            await task
        i += batch


async def wait_go(path):
    while True:
        try:
            os.stat(path)
            return ticks_ms()
        except OSError:
            await asyncio.sleep_ms(10)


async def run(plan):
    common = plan["common"]
    used0 = heap_used()
    sims = []
    for dev in plan["devices"]:
        cfg = device_config(common, dev)
        sims.append(Sim(dev["index"], device.make_agent(cfg, board)))
    used_built = heap_used()
    await start_all(sims, plan.get("connect_batch", 25))
    used_started = heap_used()
    n = len(sims)
    out({
        "ready": n,
        "heap_import": _HEAP_BEFORE_IMPORT - _HEAP_AFTER_IMPORT,
        "heap_per_agent_built": (used_built - used0) // max(n, 1),
        "heap_per_agent_connected": (used_started - used0) // max(n, 1),
        # agents that check receipts with the provider key's flash comb table
        "provider_tables": sum(1 for sim in sims if sim.agent.wallet.provider is not None
                               and sim.agent.wallet.provider.key is not None
                               and sim.agent.wallet.provider.key.comb is not None),
    })
    go = await wait_go(plan["go"])
    rate = plan["rate"]
    period = int(1000 / rate)
    warmup = int(plan.get("warmup", 0) * 1000)
    start = ticks_add(go, warmup)
    end = ticks_add(start, int(plan["duration"] * 1000))
    products = plan.get("products", ["weather", "nav", "route"])
    tasks = []
    for sim in sims:
        spread = (sim.index * _GOLDEN) % 1.0
        phase = int(spread * period)
        # warm-up: one purchase per device, spread over the first half of the warm-up
        warm = int(spread * warmup / 2) if warmup else -1
        tasks.append(asyncio.create_task(sim.fly(products, period, go, start, end, phase,
                                                 warm)))
    for task in tasks:
        await task
    used_flown = heap_used()
    for sim in sims:
        out(sim.summary())

    async def stop(sim):
        try:
            await sim.agent.stop()
        except Exception:
            pass

    stops = [asyncio.create_task(stop(s)) for s in sims]
    for task in stops:
        await task
    out({
        "done": n,
        "heap_per_agent_after": (used_flown - used0) // max(n, 1),
        "heap_total": used_flown,
        "elapsed_ms": ticks_diff(ticks_ms(), go),
    })
    return 0


def main(argv):
    plan_path = None
    mode = None
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--plan" and i + 1 < len(argv):
            plan_path = argv[i + 1]
            i += 2
        elif a in ("--init-keys", "--run"):
            mode = a[2:]
            i += 1
        else:
            out({"error": "usage", "message": "unknown argument %s" % a})
            return 2
    if plan_path is None or mode is None:
        out({"error": "usage", "message": "--plan PLAN.json and --init-keys or --run"})
        return 2
    with open(plan_path) as f:
        plan = json.load(f)
    if mode == "init-keys":
        return init_keys(plan)
    return asyncio.run(run(plan))


# Imported (the emulated boards' fleet runs run() itself): nothing starts.
if __name__ == "__main__":
    sys.exit(main(sys.argv))
