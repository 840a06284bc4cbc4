# Run under MicroPython's unix port:
#   micropython tests/mpy/test_vectors.py [VOUCHERS_JSON [MESSAGES_JSON [CBOR_INVALID_JSON]]]
# Paths default to $NANOTOLL_VECTORS (vouchers) and tests/vectors/*.json.
# NANOTOLL_FIRMWARE_PLAIN=1 runs the plain-Python field and keccak instead of viper.
# Prints one line per problem and a summary; exits 1 on any problem.

import json
import os
import sys

_here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
_root = _here + "/../.."
sys.path.insert(0, _here)
sys.path.insert(0, _root + "/firmware")

if os.getenv("NANOTOLL_FIRMWARE_PLAIN") == "1":
    # the fallbacks of ports without a native emitter; an import of the viper
    # modules then finds these (or, for keccak, no module) in sys.modules
    import _field_plain

    sys.modules["_field_viper"] = _field_plain
    sys.modules["_keccak_viper"] = None

import keccak  # noqa: E402
import secp256k1  # noqa: E402
import vector_check  # noqa: E402

if os.getenv("NANOTOLL_COMB_TABLE"):
    # sign with the flash comb table at that path (built there when missing)
    print("comb table", secp256k1.use_table(os.getenv("NANOTOLL_COMB_TABLE")))

BACKEND = (
    "field "
    + secp256k1._fe.__name__
    + ", keccak "
    + ("viper" if hasattr(keccak, "_permute_native") else "plain")
)


def _path(index, env, default):
    if len(sys.argv) > index:
        return sys.argv[index]
    return os.getenv(env) or default


def main():
    vouchers = _path(1, "NANOTOLL_VECTORS", _root + "/tests/vectors/vouchers.json")
    messages = _path(2, "NANOTOLL_MESSAGE_VECTORS", _root + "/tests/vectors/messages.json")
    invalid = _path(3, "NANOTOLL_CBOR_INVALID_VECTORS", _root + "/tests/vectors/cbor_invalid.json")
    problems = []
    counts = {}
    with open(vouchers) as f:
        data = json.load(f)
    for vector in data["vouchers"]:
        try:
            problems += vector_check.check_voucher(vector)
        except Exception as exc:
            problems.append(str(vector.get("name")) + ": " + repr(exc))
    counts["vouchers"] = len(data["vouchers"])
    with open(messages) as f:
        data = json.load(f)
    separator = vector_check.unhex(data["domain_separator"])
    for vector in data["messages"]:
        try:
            problems += vector_check.check_message(separator, vector)
        except Exception as exc:
            problems.append(str(vector.get("name")) + ": " + repr(exc))
    counts["messages"] = len(data["messages"])
    with open(invalid) as f:
        data = json.load(f)
    for case in data["cases"]:
        problems += vector_check.check_invalid(case)
    counts["cbor_invalid"] = len(data["cases"])
    for problem in problems:
        print("MISMATCH", problem)
    print(
        "checked",
        counts["vouchers"],
        "vouchers,",
        counts["messages"],
        "messages,",
        counts["cbor_invalid"],
        "invalid CBOR cases on",
        sys.implementation.name,
        ".".join(str(v) for v in sys.implementation.version[:3]),
        "(" + BACKEND + ")",
        "-",
        len(problems),
        "problems",
    )
    sys.exit(1 if problems else 0)


main()
