# The conformance suite's messages through the firmware's own agent, under MicroPython.
#
#   micropython conformance_mp.py STATE_DIR DEVICE_KEY CHAIN_ID ESCROW PROVIDER CHANNEL REQUEST
#
# (keys, addresses and the request as hex). stdin: one "<kind> x<hex>" a line, kind one
# of catalog, response, params. stdout, a line each:
#   catalog   -> "ok" when the agent takes it as its catalog, else "refused"
#   response  -> "ok" when the agent accepts data and receipt for REQUEST, else "refused"
#                (dropped, or an error for the purchase: either way nothing is acked)
#   params    -> "signed" when the agent signs a weather request with these params,
#                "refused <code>" when it refuses them before signing
# and "crash <exception>" for anything that is not a clean refusal.

import sys
from binascii import unhexlify

import cbor
import errors as E
import wallet as W
from agent import Agent, decode_response
from policy import Policy
from store import Store


def make_agent(argv):
    state_dir, key, chain, escrow, provider, channel = argv[1:7]
    wallet = W.Wallet(unhexlify(key), int(chain), unhexlify(escrow))
    store = Store(state_dir, int(channel))
    store.load()
    policy = Policy({"deposit": 10**12, "budget": 10**12})
    # No MQTT client: these calls never publish.
    return Agent(wallet, None, store, policy, unhexlify(provider), int(channel))


def on_catalog(agent, payload):
    agent.catalog = None
    agent._max_seq = -1
    agent._on_catalog(payload)
    return "ok" if agent.catalog is not None else "refused"


def on_response(agent, payload, request):
    agent._expect(request)
    agent._on_response(decode_response(payload))
    if agent._response is None:
        return "refused"
    code, body = agent._response
    if code != E.OK:
        return "refused"
    agent.store.state.pending = request
    agent._accept(request, body)
    return "ok"


def on_params(agent, payload):
    params = cbor.loads(payload)
    try:
        agent._prepare("weather", params, 1500, 1, None)
    except E.ProtocolError as exc:
        return "refused " + E.code_name(exc.code)
    return "signed"


def main():
    agent = make_agent(sys.argv)
    request = unhexlify(sys.argv[7])
    out = sys.stdout
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        kind, _, text = line.strip().partition(" ")
        payload = unhexlify(text[1:])  # "x" first, so that an empty message survives
        try:
            if kind == "catalog":
                verdict = on_catalog(agent, payload)
            elif kind == "response":
                verdict = on_response(agent, payload, request)
            else:
                verdict = on_params(agent, payload)
        except (ValueError, E.ProviderError):  # CBORError is a ValueError
            verdict = "refused"
        except Exception as exc:
            verdict = "crash " + repr(exc)
        out.write(verdict + "\n")


main()
