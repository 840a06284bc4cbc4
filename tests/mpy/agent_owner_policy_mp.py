# The agent receiving owner-signed policies on its policy topic (the handler its pump
# calls), with a real wallet, store and keeper on the unix port's file system.
#
#   micropython agent_owner_policy_mp.py WORKDIR
#
# Prints one JSON line: per case, whether the policy in force changed, its seq and
# budget after, the bytes on flash unchanged or not, and the log line it wrote.

import json
import os
import sys

import cbor
import eip712
import owner_policy as OP
import secp256k1
import wallet as W
from agent import Agent
from policy import Policy
from store import Store

root = sys.argv[1]
CHAIN = 31337
ESCROW = b"\x95\xc6\x2b\x7b\xca\x32\x87\x5b\xad\x11\x94\xeb\x8c\x6a\x15\x82\x77\x36\x6f\xd9"
SEP = eip712.domain_separator(CHAIN, ESCROW)
OWNER_KEY = b"\x33" * 32
OTHER_KEY = b"\x44" * 32
CHANNEL = 9
PROVIDER = secp256k1.address(b"\x11" * 32)


def signed(seq, deposit, budget, key=OWNER_KEY, channel=CHANNEL, separator=SEP):
    ints = (channel, seq, deposit, budget, 2**40, 0, 0, 0, 0)
    sig = secp256k1.sign(key, OP.digest(separator, (ints, [], [], [], b"")))
    return cbor.dumps([1] + list(ints) + [[], [], [], sig])


def flash():
    try:
        with open(root + "/policy.rec", "rb") as f:
            return f.read()
    except OSError:
        return None


store = Store(root, CHANNEL)
store.load()
store.state.cumulative = 3000  # the device has signed this much already
store.state.spent = 3000
keeper = OP.OwnerPolicy(root, secp256k1.address(OWNER_KEY), CHANNEL, SEP)
lines = []
agent = Agent(W.Wallet(b"\x22" * 32, CHAIN, ESCROW), None, store,
              Policy({"deposit": 5000, "budget": 4000}), PROVIDER, CHANNEL,
              log=lambda *a: lines.append(" ".join(str(x) for x in a)), owner_policy=keeper)

cases = [
    ("first", signed(1, 9000, 8000)),
    ("the same again (retained, on reconnect)", signed(1, 9000, 8000)),
    ("raised", signed(3, 12000, 10000)),
    ("older seq", signed(2, 20000, 20000)),
    ("replayed seq", signed(3, 20000, 20000)),
    ("another owner", signed(4, 20000, 20000, key=OTHER_KEY)),
    ("another channel", signed(4, 20000, 20000, channel=CHANNEL + 1)),
    ("another escrow", signed(4, 20000, 20000, separator=eip712.domain_separator(CHAIN, b"\x01" * 20))),
    ("another chain", signed(4, 20000, 20000, separator=eip712.domain_separator(1, ESCROW))),
    ("budget above deposit", signed(4, 20000, 20001)),
    ("deposit below what was signed", signed(4, 2999, 2000)),
    ("not CBOR", b"\xff\x00"),
]
out = []
for name, payload in cases:
    before = flash()
    policy_before = agent.policy
    del lines[:]
    agent._on_policy(payload)
    out.append({"case": name, "changed": agent.policy is not policy_before, "seq": keeper.seq,
                "budget": agent.policy.budget, "deposit": agent.policy.deposit,
                "flash_same": flash() == before, "log": lines[-1] if lines else ""})
# a reboot: the keeper loads what was applied last
again = OP.OwnerPolicy(root, secp256k1.address(OWNER_KEY), CHANNEL, SEP)
again.load(store.state.cumulative)
print(json.dumps({"cases": out, "after_reboot": [again.seq, again.policy.budget],
                  "refusals": agent.policy_refusals}))
