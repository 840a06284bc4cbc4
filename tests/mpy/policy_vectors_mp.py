# The owner-signed policy vectors (tests/vectors/policies.json) on the firmware:
# every policy's hashes, digest and signer, every verdict a device must reach, every
# invalid policy refused, and a crash-free apply/load round trip.
#
#   micropython policy_vectors_mp.py POLICIES_JSON WORKDIR
#
# Prints one line per problem ("MISMATCH ...") and a last line "checked P policies,
# V verdicts, I invalid - N problems".

import json
import sys
from binascii import unhexlify

import eip712
import owner_policy as OP
import secp256k1


def unhex(text):
    return unhexlify(text[2:] if text[:2] == "0x" else text)


data = json.load(open(sys.argv[1]))
root = sys.argv[2]
problems = 0


def mismatch(name, what):
    global problems
    problems += 1
    print("MISMATCH %s: %s" % (name, what))


by_name = {}
for p in data["policies"]:
    name = p["name"]
    by_name[name] = p
    wire = unhex(p["wire"])
    try:
        decoded = OP.decode(wire)
    except OP.PolicyRefused as exc:
        mismatch(name, "refused: %s" % exc)
        continue
    ints = decoded[0]
    want = tuple(int(p["fields"][n]) for n, _ in eip712.POLICY_UINTS)
    if ints != want:
        mismatch(name, "fields")
    if OP.providers_hash(decoded[1]) != unhex(p["providers_hash"]):
        mismatch(name, "providers_hash")
    if OP.caps_hash(decoded[2], decoded[3]) != unhex(p["caps_hash"]):
        mismatch(name, "caps_hash")
    separator = eip712.domain_separator(p["chain_id"], p["verifying_contract"])
    if separator != unhex(p["domain_separator"]):
        mismatch(name, "domain_separator")
    digest = OP.digest(separator, decoded)
    if digest != unhex(p["digest"]):
        mismatch(name, "digest")
    if decoded[4] != unhex(p["signature"]):
        mismatch(name, "signature")
    if secp256k1.recover_address(digest, decoded[4]) != unhex(p["owner"]):
        mismatch(name, "signer")


def outcome(v):
    p = by_name[v["policy"]]
    separator = eip712.domain_separator(v["chain_id"], v["verifying_contract"])
    keeper = OP.OwnerPolicy(root, unhex(v["owner"]), v["device_channel"], separator)
    keeper.seq = v["applied_seq"]
    try:
        keeper.check(unhex(p["wire"]), v["cumulative"])
    except OP.PolicyRefused as exc:
        return exc.reason
    return "applied"


for v in data["verdicts"]:
    got = outcome(v)
    if got != v["outcome"]:
        mismatch(v["policy"], "verdict %s, expected %s" % (got, v["outcome"]))

for case in data["invalid"]:
    try:
        OP.to_policy(OP.decode(unhex(case["hex"])))
    except (OP.PolicyRefused, ValueError):
        continue
    mismatch(case["name"], "accepted")

# apply, then load in a fresh keeper: the same policy and seq come back
first = by_name["no lists, defaults"]
separator = eip712.domain_separator(first["chain_id"], first["verifying_contract"])
keeper = OP.OwnerPolicy(root, unhex(first["owner"]), 7, separator)
keeper.apply(unhex(first["wire"]), 0)
again = OP.OwnerPolicy(root, unhex(first["owner"]), 7, separator)
if again.load(0) is None or again.seq != 1 or again.policy.budget != 2000000:
    mismatch("apply and load", "the applied policy did not come back: %s" % again.problem)

print("checked %d policies, %d verdicts, %d invalid - %d problems"
      % (len(data["policies"]), len(data["verdicts"]), len(data["invalid"]), problems))
sys.exit(1 if problems else 0)
