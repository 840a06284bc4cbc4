"""``nanotoll bench fuzz``: coverage-guided fuzzing of every decoder that reads bytes from
outside the gateway, with atheris (libFuzzer for CPython).

Targets (``TARGETS``): ``request`` (``decode_request``: its fast reader, then the strict
decoder), ``response``, ``receipt`` (the input as the receipt of a success response),
``catalog``, ``cbor`` (the generic strict decoder), ``eventlog`` (the escrow's event logs,
``EscrowEventDecoder.decode``), ``config`` (a gateway TOML file, ``parse_config``),
``policy`` (an owner-signed policy, ``decode_policy``) and ``registration`` (a provider's
ERC-8004 registration file, ``parse_registration``).

Per execution, an input counts as

- a *crash* when the decoder raises anything but its own refusal (``ProtocolError``,
  ``CBORError``, ``LogFormatError``, ``ConfigError``, ``PolicyError``, ``IdentityError``);
- a *mismatch* when two readings disagree: an accepted message that does not encode back
  to the same bytes (the format is canonical, so it must), the fast request reader and
  the strict decoder reading one request differently, or the strict CBOR decoder
  accepting an item that cbor2 reads as another value, or an accepted registration file
  that reads differently once written out again.

Each target runs in a process of its own (atheris takes the process over), seeded from
``tests/vectors``; crashing and mismatching inputs are kept beside the corpus. Afterwards
the corpus of every CBOR target is replayed through the firmware's CBOR decoder on
MicroPython's unix port, and each input on which it and the CPython decoder disagree
(another value, or another refusal reason) is one more mismatch; the ``policy`` corpus
is replayed through the firmware's policy decoder (``owner_policy.decode`` and the limits
``to_policy`` checks), and each input one side accepts and the other refuses is a mismatch.

``run_fuzz_bench(runs=1_000_000) -> dict``: per target ``executions``, ``crashes``,
``mismatches``, ``coverage`` (libFuzzer's covered edges), ``features``, ``corpus``,
``firmware_replayed`` and ``seconds``; ``runs`` lowers the executions for quick runs and
``seconds`` bounds each target's time instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
VECTORS = ROOT / "tests" / "vectors"
FIRMWARE = ROOT / "firmware"
KEPT_FINDINGS = 20  # inputs saved per target and kind of finding
# A success response up to its receipt: [1, 1, 0, [h'', <receipt>]]
RECEIPT_FRAME = bytes.fromhex("8401008240")
CBOR_TARGETS = ("request", "response", "receipt", "catalog", "cbor")
_FINAL = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)")
_UNITS = re.compile(r"stat::number_of_executed_units: (\d+)")


class Mismatch(Exception):
    """Two readings of one input disagree."""


@dataclass(frozen=True, slots=True)
class Target:
    check: Callable[[bytes], None]  # raises Mismatch, a refusal, or crashes
    refusals: tuple[type[BaseException], ...]


def _roundtrip(decoded: Any, data: bytes) -> None:
    if decoded.encode() != data:
        raise Mismatch("accepted bytes that do not encode back to themselves")


def _protocol_target(name: str) -> Target:
    from ..protocol import cbor, messages
    from ..protocol.errors import ProtocolError

    def request(data: bytes) -> None:
        fast = messages._read_common_request(data)
        decoded = messages._decode_request_strictly(data)
        if fast is not None and fast != decoded:
            raise Mismatch("the fast reader and the strict decoder read it differently")
        _roundtrip(decoded, data)

    def response(data: bytes) -> None:
        _roundtrip(messages.decode_response(data), data)

    def receipt(data: bytes) -> None:
        response(RECEIPT_FRAME + data)

    def catalog(data: bytes) -> None:
        _roundtrip(messages.decode_catalog(data), data)

    checks = {"request": request, "response": response, "receipt": receipt, "catalog": catalog}
    if name in checks:
        return Target(checks[name], (ProtocolError,))
    import cbor2

    def generic(data: bytes) -> None:
        value = cbor.loads(data)
        if cbor.dumps(value) != data:
            raise Mismatch("accepted an item that does not encode back to itself")
        if cbor2.loads(data) != value:
            raise Mismatch("cbor2 reads another value")

    return Target(generic, (cbor.CBORError,))


def _eventlog_target() -> Target:
    from ..chain.eventlog import EscrowEventDecoder, LogFormatError

    decoder = EscrowEventDecoder()
    topics = [bytes.fromhex(t[2:]) for t in decoder.topics]

    def eventlog(data: bytes) -> None:
        # first byte: which topic0 (or none of ours); 32 bytes of topic1; the rest is data
        pick = data[0] if data else 0
        topic0 = topics[pick % len(topics)] if pick < 0x80 else bytes(32)
        log = {"topics": [topic0, data[1:33]], "data": data[33:], "blockNumber": 7,
               "blockHash": b"\x01" * 32, "logIndex": pick}
        decoder.decode(log)

    return Target(eventlog, (LogFormatError,))


def _config_target() -> Target:
    import tomllib

    from ..gateway.config import ConfigError, parse_config

    base = Path(tempfile.gettempdir())

    def config(data: bytes) -> None:
        try:
            document = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            return  # not TOML: the parser under test never sees it
        parse_config(document, base, "fuzz.toml")

    return Target(config, (ConfigError,))


def _policy_target() -> Target:
    from ..protocol.policy import PolicyError, decode_policy

    def policy(data: bytes) -> None:
        _roundtrip(decode_policy(data), data)

    return Target(policy, (PolicyError,))


def _registration_target() -> Target:
    from ..identity.errors import IdentityError
    from ..identity.registration import parse_registration

    def registration(data: bytes) -> None:
        parsed = parse_registration(data)
        if parse_registration(parsed.encode()) != parsed:
            raise Mismatch("an accepted file reads differently once written out again")

    return Target(registration, (IdentityError,))


def build_target(name: str) -> Target:
    """The target ``name``; imports only what it runs (atheris traces what is imported
    while it builds one)."""
    if name == "eventlog":
        return _eventlog_target()
    if name == "config":
        return _config_target()
    if name == "policy":
        return _policy_target()
    if name == "registration":
        return _registration_target()
    return _protocol_target(name)


TARGETS = ("request", "response", "receipt", "catalog", "cbor", "eventlog", "config",
           "policy", "registration")
LEANS_ON = {"eventlog": ("eth_abi",), "config": ("tomllib",)}
# Longest input libFuzzer makes: a little over each message's size limit (a registration
# file may have 64 KiB; the fuzzer's mutations matter in its first few KiB).
MAX_LEN = {"request": 600, "response": 8300, "receipt": 400, "catalog": 2100, "cbor": 1200,
           "eventlog": 600, "config": 4000, "policy": 1100, "registration": 4000}


# ------------------------------------------------------------------ seeds --


def _vector_items() -> dict[str, list[bytes]]:
    """Seed inputs per target from tests/vectors (empty lists when they are not there)."""
    from ..protocol import cbor

    seeds: dict[str, list[bytes]] = {name: [] for name in TARGETS}
    if not VECTORS.is_dir():
        return seeds
    messages = json.loads((VECTORS / "messages.json").read_text())["messages"]
    invalid = json.loads((VECTORS / "cbor_invalid.json").read_text())
    vouchers = json.loads((VECTORS / "vouchers.json").read_text())["vouchers"]
    for message in messages:
        raw = bytes.fromhex(message["cbor"])
        seeds[message["kind"]].append(raw)
        seeds["cbor"].append(raw)
        value = cbor.loads(raw)
        if message["kind"] == "response" and value[2] == 0:
            seeds["receipt"].append(cbor.dumps(value[3][1]))
    for case in invalid.get("messages", []):
        seeds[case["kind"]].append(bytes.fromhex(case["hex"]))
    policies = json.loads((VECTORS / "policies.json").read_text())
    seeds["policy"] += [bytes.fromhex(p["wire"][2:]) for p in policies["policies"]]
    seeds["policy"] += [bytes.fromhex(case["hex"]) for case in policies["invalid"]]
    for case in invalid["cases"]:
        seeds["cbor"].append(bytes.fromhex(case["hex"]))
    seeds["cbor"] += [bytes.fromhex(v["cbor"][2:]) for v in vouchers[:8]]
    return seeds


# The least a gateway config holds, beside the commented example of examples/gateway.
MINIMAL_CONFIG = b"""[provider]
key_env = "K"
[chain]
rpc_url = "http://127.0.0.1:8545"
escrow = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
chain_id = 1
[ledger]
url = "sqlite:///l.db"
[catalog]
products = [{name = "a", price = 1, description = ""}]
"""


def _config_seeds() -> list[bytes]:
    examples = sorted((ROOT / "examples").glob("**/*.toml"))
    return [MINIMAL_CONFIG, *(path.read_bytes() for path in examples)]


def _event_seeds() -> list[bytes]:
    # topic pick, channel id 1 as topic1, then one 32-byte word or a redeem's packed items
    channel = (1).to_bytes(32, "big")
    word = (10**6).to_bytes(32, "big")
    items = (1).to_bytes(4, "big") + (1500).to_bytes(8, "big") + bytes(8)
    packed = (32).to_bytes(32, "big") + len(items).to_bytes(32, "big") + items + bytes(12)
    return [bytes([pick]) + channel + data for pick in range(5) for data in (word, packed)]


def _registration_seeds() -> list[bytes]:
    from ..identity.registration import ProductEntry, Registration, RegistrationEntry

    sample = Registration(
        name="wx", description="nowcasts", broker_url="mqtts://broker.example:8883",
        catalog_topic="nt/1/d7f600c6fc2b9104dc9067264e2d49062dfc2285/catalog",
        protocol_version=1, provider="0xd7f600c6fc2B9104Dc9067264e2d49062DfC2285",
        escrow="0x5FbDB2315678afecb367f032d93F642f64180aa3", chain_id=31337,
        products=(ProductEntry("weather", 1500, "nowcast"), ProductEntry("nav", 4000, "air")),
        registrations=(RegistrationEntry(
            7, "eip155:31337:0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"),),
        web="http://127.0.0.1:9464/.well-known/agent-registration.json",
        reputation_registry="0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0")
    bare = Registration(
        name="", description="", broker_url="mqtt://h", catalog_topic="t",
        protocol_version=1, provider=sample.provider, escrow=sample.escrow, chain_id=1,
        products=())
    return [sample.encode(), bare.encode(), json.dumps(sample.document()).encode()]


def seeds(name: str) -> list[bytes]:
    if name == "config":
        return _config_seeds()
    if name == "eventlog":
        return _event_seeds()
    if name == "registration":
        return _registration_seeds()
    return _vector_items()[name]


# ------------------------------------------------------------------ worker --


class _Worker:
    """Runs inside the fuzzing process: counts and keeps what the target finds."""

    def __init__(self, target: Target, findings: Path) -> None:
        self.target = target
        self.findings = findings
        self.counts = {"crashes": 0, "mismatches": 0}
        self.kinds: dict[str, int] = {}

    def __call__(self, data: bytes) -> None:
        try:
            self.target.check(data)
        except self.target.refusals:
            pass
        except Mismatch as exc:
            self._found("mismatches", data, str(exc))
        except Exception as exc:  # a decoder that raises anything else has crashed
            self._found("crashes", data, f"{type(exc).__name__}: {exc}")

    def _found(self, what: str, data: bytes, why: str) -> None:
        self.counts[what] += 1
        kind = why.split(":")[0][:60]
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if self.counts[what] <= KEPT_FINDINGS:
            (self.findings / f"{what}-{self.counts[what]:02d}").write_bytes(data)
        (self.findings / "counts.json").write_text(json.dumps(
            {**self.counts, "kinds": self.kinds}))


def _work(name: str, corpus: str, findings: str, libfuzzer_args: list[str]) -> None:
    import atheris  # type: ignore[import-untyped]

    # Trace the branches of nanotoll's own modules, and of the parser a target leans on
    # (eth_abi under the event decoder, tomllib under the config), not of web3 and the rest.
    with atheris.instrument_imports(include=["nanotoll", *LEANS_ON.get(name, ())]):
        worker = _Worker(build_target(name), Path(findings))
    atheris.Setup([sys.argv[0], *libfuzzer_args, corpus], worker)
    atheris.Fuzz()


# ------------------------------------------------------------------ driver --


def _micropython() -> Path:
    configured = os.environ.get("NANOTOLL_MICROPYTHON")
    return Path(configured) if configured else ROOT / ".toolchain" / "bin" / "micropython"


_FIRMWARE_REPLAY = """
import sys
from binascii import hexlify, unhexlify
import cbor
while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        out = "OK " + hexlify(cbor.dumps(cbor.loads(unhexlify(line.strip()[1:])))).decode()
    except cbor.CBORError as exc:
        out = "ERR " + exc.reason
    except Exception as exc:
        out = "CRASH " + repr(exc)
    sys.stdout.write(out + "\\n")
"""


# The firmware's verdict on a policy: what a device reads before its own state (channel,
# seq, owner, deposit) is asked, the limits included.
_FIRMWARE_POLICY_REPLAY = """
import sys
from binascii import unhexlify
import owner_policy
while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        owner_policy.to_policy(owner_policy.decode(unhexlify(line.strip()[1:])))
        out = "OK"
    except ValueError:
        out = "ERR"
    except Exception as exc:
        out = "CRASH " + repr(exc)
    sys.stdout.write(out + "\\n")
"""


def _python_verdict(data: bytes) -> str:
    from ..protocol import cbor

    try:
        return "OK " + cbor.dumps(cbor.loads(data)).hex()
    except cbor.CBORError as exc:
        return "ERR " + exc.reason


def _python_policy_verdict(data: bytes) -> str:
    from ..protocol.policy import PolicyError, decode_policy

    try:
        decode_policy(data)
    except PolicyError:
        return "ERR"
    return "OK"


def firmware_replay(inputs: Iterable[bytes], findings: Path,
                    policy: bool = False) -> tuple[int, int]:
    """(replayed, disagreements) of the firmware's CBOR decoder against CPython's, or with
    ``policy`` of its policy decoder against ``decode_policy``."""
    items = sorted(set(inputs))
    binary = _micropython()
    if not items or not binary.exists():
        return 0, 0
    verdict = _python_policy_verdict if policy else _python_verdict
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "replay.py"
        script.write_text(_FIRMWARE_POLICY_REPLAY if policy else _FIRMWARE_REPLAY)
        done = subprocess.run(
            [str(binary), str(script)], input="".join(f"x{item.hex()}\n" for item in items),
            capture_output=True, text=True, timeout=3600, check=False,
            env={**os.environ, "MICROPYPATH": str(FIRMWARE)})
    answers = done.stdout.splitlines()
    if done.returncode != 0 or len(answers) != len(items):
        raise RuntimeError(f"firmware replay failed: {done.stderr[-500:]}")
    disagreeing = [item for item, answer in zip(items, answers, strict=True)
                   if answer != verdict(item)]
    for index, item in enumerate(disagreeing[:KEPT_FINDINGS]):
        (findings / f"firmware-mismatch-{index:02d}").write_bytes(item)
    return len(items), len(disagreeing)


def run_target(name: str, workdir: Path, runs: int, seconds: float | None = None,
               firmware: bool = True) -> dict[str, Any]:
    """Fuzz one target in a child process; its figures."""
    corpus, findings = workdir / name / "corpus", workdir / name / "findings"
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seeds(name)):
        (corpus / f"seed-{index:03d}").write_bytes(seed)
    args = [f"-runs={runs}", f"-max_len={MAX_LEN[name]}", "-print_final_stats=1", "-seed=1",
            f"-artifact_prefix={findings}/"]
    if seconds is not None:
        args.append(f"-max_total_time={max(1, int(seconds))}")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "nanotoll.bench.fuzz", name, str(corpus), str(findings), *args],
        capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    final = _FINAL.findall(done.stderr)
    units = _UNITS.findall(done.stderr)
    if done.returncode != 0 or not final or not units:
        raise RuntimeError(f"fuzz target {name} failed ({done.returncode}): {done.stderr[-1500:]}")
    counts_path = findings / "counts.json"
    counts = json.loads(counts_path.read_text()) if counts_path.exists() else {}
    coverage, features, corpus_size = (int(v) for v in final[-1])
    figures: dict[str, Any] = {
        "executions": int(units[-1]), "crashes": counts.get("crashes", 0),
        "mismatches": counts.get("mismatches", 0), "coverage": coverage,
        "features": features, "corpus": corpus_size, "seconds": round(elapsed, 1),
        "firmware_replayed": 0,
    }
    if firmware and name in CBOR_TARGETS:
        frame = RECEIPT_FRAME if name == "receipt" else b""
        replayed, disagreeing = firmware_replay(
            (frame + path.read_bytes() for path in corpus.iterdir()), findings)
        figures["firmware_replayed"] = replayed
        figures["mismatches"] += disagreeing
    elif firmware and name == "policy":
        replayed, disagreeing = firmware_replay(
            (path.read_bytes() for path in corpus.iterdir()), findings, policy=True)
        figures["firmware_replayed"] = replayed
        figures["mismatches"] += disagreeing
    if counts.get("kinds"):
        figures["finding_kinds"] = counts["kinds"]
    return figures


def run_fuzz_bench(runs: int = 1_000_000, seconds: float | None = None,
                   targets: Iterable[str] = TARGETS, workdir: str | None = None,
                   firmware: bool = True) -> dict[str, Any]:
    """Every target in turn; flat figures ``<target>_<figure>`` plus their totals."""
    chosen = list(targets)
    unknown = sorted(set(chosen) - set(TARGETS))
    if unknown:
        raise ValueError(f"unknown fuzz targets {unknown}; known: {', '.join(TARGETS)}")
    if runs < 1:
        raise ValueError("runs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="nanotoll-fuzz-") as scratch:
        folder = Path(workdir) if workdir else Path(scratch)
        per_target = {name: run_target(name, folder, runs, seconds, firmware)
                      for name in chosen}
    figures: dict[str, Any] = {f"{name}_{key}": value for name, result in per_target.items()
                               for key, value in result.items()}
    for total in ("executions", "crashes", "mismatches"):
        figures[total] = sum(result[total] for result in per_target.values())
    figures["targets"] = len(chosen)
    figures["runtime"] = f"atheris on CPython {sys.version.split()[0]}"
    return figures


if __name__ == "__main__":
    _work(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
