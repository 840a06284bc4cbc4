# nanotoll device: the command line every board's main.py can offer.
#
#   --config CONFIG --init-key
#       make the device key (once) and print {"address": "0x...", "created": bool}
#   --config CONFIG --buy PRODUCT --count N [--params JSON|@FILE] [--max-price N]
#                   [--interval-ms N]
#       one JSON line per purchase, then one summary line; exit 0 when all succeeded
#   --config CONFIG --status | --resync
#   --config CONFIG --app flight
#       run an example app (examples/drone/flight.py) on this agent
#   --verbose
#       agent and MQTT log lines on stderr

import json
import sys
import time
import asyncio
import device
import errors


_FLAGS = ("--init-key", "--status", "--resync", "--verbose")


def parse(argv):
    opts = {}
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in _FLAGS:
            opts[a[2:]] = True
            i += 1
        elif a.startswith("--") and i + 1 < len(argv):
            opts[a[2:]] = argv[i + 1]
            i += 2
        else:
            raise ValueError("unknown argument %s" % a)
    return opts


def out(obj):
    print(json.dumps(obj))


def default_params(product, now):
    if product == "weather":
        return {"lat": 52520008, "lon": 13404954, "alt": 120, "t": now}
    return {}


def state_json(agent):
    st = agent.state
    if st is None:
        return {"corrupt": agent.store.corrupt}
    return {
        "channel": st.channel,
        "cumulative": st.cumulative,
        "acked": st.acked,
        "spent": st.spent,
        "request_id": st.request_id,
        "pending": len(st.pending) > 0,
    }


async def run(opts, cfg, board, examples):
    log = None
    if opts.get("verbose"):
        log = lambda *a: print(*a, file=sys.stderr)
    agent = device.make_agent(cfg, board, log)
    if opts.get("status"):
        out(state_json(agent))
        return 0
    board.network_up(cfg)
    try:
        await agent.start()
    except errors.AgentError as exc:
        out({"summary": True, "ok": 0, "failed": int(opts.get("count", "0")),
             "error": errors.error_code(exc), "message": str(exc)})
        await agent.stop()
        return 1
    rc = 0
    try:
        if opts.get("resync"):
            try:
                cum = await agent.resync()
                out({"resync": True, "cumulative": cum, "state": state_json(agent)})
            except errors.AgentError as exc:
                out({"resync": False, "error": errors.error_code(exc), "message": str(exc)})
                rc = 1
        product = opts.get("buy")
        if product:
            rc = await buy_loop(agent, opts, product, board)
        if opts.get("app"):
            if examples and examples not in sys.path:
                sys.path.append(examples)
            app = __import__(opts["app"])
            max_price = int(opts["max-price"]) if "max-price" in opts else None
            bought = await app.fly(agent, app.PLAN, board.now(), max_price)
            summary = {"summary": True, "app": opts["app"], "purchases": bought}
            summary.update(state_json(agent))
            out(summary)
    finally:
        await agent.stop()
    return rc


async def buy_loop(agent, opts, product, board):
    count = int(opts.get("count", "1"))
    max_price = int(opts["max-price"]) if "max-price" in opts else None
    interval = int(opts.get("interval-ms", "0"))
    params = None
    if "params" in opts:
        text = opts["params"]
        if text.startswith("@"):  # long params from a file (argv items over 255 bytes crash the unix port)
            with open(text[1:]) as f:
                text = f.read()
        params = json.loads(text)
    ok = failed = paid = 0
    for i in range(1, count + 1):
        t0 = time.ticks_ms()
        p = params if params is not None else default_params(product, board.now())
        line = {"i": i, "product": product}
        try:
            data = await agent.buy(product, p, max_price=max_price)
            st = agent.state
            receipt = agent.receipt
            line.update(
                {
                    "ok": True,
                    "error": None,
                    "request_id": st.request_id,
                    "cumulative": st.cumulative,
                    "price": agent.last_price,
                    "receipt_verified": True,
                    "receipt_cumulative": receipt[1],
                    "data_bytes": len(data),
                }
            )
            ok += 1
            paid += agent.last_price
        except Exception as exc:  # AgentError, or a bug: reported, never a traceback
            st = agent.state
            line.update(
                {
                    "ok": False,
                    "error": errors.error_code(exc),
                    "message": str(exc),
                    "request_id": st.request_id if st else None,
                    "cumulative": st.cumulative if st else None,
                    "price": agent.last_price,
                    "receipt_verified": False,
                }
            )
            failed += 1
        line["ms"] = time.ticks_diff(time.ticks_ms(), t0)
        out(line)
        if interval and i < count:
            await asyncio.sleep_ms(interval)
    summary = {"summary": True, "purchases": count, "ok": ok, "failed": failed, "paid": paid}
    summary.update(state_json(agent))
    summary["device"] = device.checksum_address(agent.wallet.address)
    summary["mqtt_connects"] = agent.client.connects
    summary["mqtt_retransmits"] = agent.client.retransmits
    summary["unverified"] = agent.unverified  # responses ignored: not the provider's word
    out(summary)
    return 0 if failed == 0 else 1


def main(argv, board, examples=None):
    """Run the command line in argv on a board module; return the exit code."""
    try:
        opts = parse(argv)
        cfg = device.load_config(opts["config"])
    except (ValueError, KeyError, OSError) as exc:
        out({"error": "usage", "message": "%s: %r" % (type(exc).__name__, exc)})
        return 2
    if opts.get("init-key"):
        address, made = device.init_key(cfg, board)
        out({"address": address, "created": made, "key_file": cfg["key_file"]})
        return 0
    return asyncio.run(run(opts, cfg, board, examples))

