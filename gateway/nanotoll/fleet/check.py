"""After a fleet run: the devices' own records against the ledger and the chain.

Vouchers are cumulative, so every purchase of a device has its own cumulative amount.
The check matches them one to one:

* every voucher the ledger accepted must be a purchase the device made, charged exactly
  its catalog price (else it is a *double charge*: money taken for nothing the device
  asked for, or more than the price);
* every purchase the device holds a receipt for must be in the ledger (else *unrecorded*);
* per channel, what the chain paid = the ledger's highest accepted voucher = the
  device's own highest receipted amount (``acked``), and the provider's balance grew by
  the sum (*settled = paid*).

The ledger's individual vouchers are read with one SELECT on its ``vouchers`` table (the
Ledger interface offers only each channel's highest voucher).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .devices import DeviceSlot


@dataclass
class Verdict:
    devices: int = 0
    purchases: int = 0
    ok: int = 0
    errors: int = 0  # purchases whose buy() raised
    recovered_late: int = 0  # of those, answered and charged later (the agent re-sent)
    double_charges: int = 0
    unrecorded: int = 0
    duplicate_receipts: int = 0
    charged_unanswered: int = 0  # charged, but the device never saw the answer
    device_paid: int = 0  # sum of the devices' own acked amounts
    ledger_accepted: int = 0
    chain_paid: int = 0
    provider_received: int = 0
    mismatched_channels: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def settled_equals_paid(self) -> bool:
        return (not self.mismatched_channels and self.devices > 0
                and self.device_paid == self.ledger_accepted == self.chain_paid
                == self.provider_received)

    @property
    def passed(self) -> bool:
        return (self.errors == 0 and self.double_charges == 0 and self.unrecorded == 0
                and self.duplicate_receipts == 0 and self.settled_equals_paid
                and not self.problems)

    def as_dict(self) -> dict[str, Any]:
        return {
            "devices": self.devices, "purchases": self.purchases, "ok": self.ok,
            "errors": self.errors, "recovered_late": self.recovered_late,
            "double_charges": self.double_charges, "unrecorded": self.unrecorded,
            "duplicate_receipts": self.duplicate_receipts,
            "charged_unanswered": self.charged_unanswered,
            "device_paid": self.device_paid, "ledger_accepted": self.ledger_accepted,
            "chain_paid": self.chain_paid, "provider_received": self.provider_received,
            "settled_equals_paid": self.settled_equals_paid,
            "mismatched_channels": self.mismatched_channels[:20],
            "problems": self.problems[:20], "passed": self.passed,
        }

    def table(self) -> str:
        rows = [
            ("devices", f"{self.devices:,}"),
            ("purchases ok / made", f"{self.ok:,} / {self.purchases:,}"),
            ("errors (after the agent's retries)", f"{self.errors:,}"
             + (f" ({self.recovered_late} answered later)" if self.recovered_late else "")),
            ("double charges", f"{self.double_charges:,}"),
            ("receipts missing from the ledger", f"{self.unrecorded:,}"),
            ("paid by the devices (their records)", f"{self.device_paid:,} units"),
            ("accepted by the ledger", f"{self.ledger_accepted:,} units"),
            ("settled on-chain", f"{self.chain_paid:,} units"),
            ("provider balance change", f"{self.provider_received:,} units"),
            ("settled = paid", "yes" if self.settled_equals_paid else "NO"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"  {name:<{width}}  {value}" for name, value in rows]
        lines += [f"  problem: {p}" for p in self.problems[:10]]
        lines += [f"  channel mismatch: {m}" for m in self.mismatched_channels[:10]]
        return "result:\n" + "\n".join(lines)


def ledger_vouchers(url: str) -> list[tuple[int, int, int, int]]:
    """(channel id, cumulative, increment, accepted ms) of every voucher the ledger took."""
    rows: list[tuple[Any, Any, Any, Any]]
    query = "SELECT channel_id, cumulative, increment, accepted_ms FROM vouchers"
    if url.startswith("sqlite:///"):
        import sqlite3

        path = url[len("sqlite:///"):]
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = conn.execute(query).fetchall()
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(url, connect_timeout=10) as pg:
            rows = pg.execute(query).fetchall()  # type: ignore[assignment]
    return sorted((int(c), int(cum), int(inc), int(ms)) for c, cum, inc, ms in rows)


def dump_ledger(url: str, run_dir: Path) -> dict[int, dict[int, int]]:
    """Write vouchers.jsonl and settlements.json (for the report); returns channel id ->
    {cumulative: increment}."""
    from ..ledger import open_ledger

    found: dict[int, dict[int, int]] = {}
    with (run_dir / "vouchers.jsonl").open("w") as out:
        for channel_id, cumulative, increment, accepted_ms in ledger_vouchers(url):
            found.setdefault(channel_id, {})[cumulative] = increment
            out.write(json.dumps({"channel": channel_id, "cumulative": cumulative,
                                  "increment": increment, "accepted_ms": accepted_ms}) + "\n")
    ledger = open_ledger(url)
    try:
        settlements = [{
            "id": s.settlement_id, "state": s.state.value, "nonce": s.nonce, "tx": s.tx_hash,
            "created_ms": s.created_ms, "updated_ms": s.updated_ms, "gas_used": s.gas_used,
            "block": s.block_number, "amount": s.amount,
            "items": [[i.channel_id, i.cumulative, i.outcome] for i in s.items],
        } for s in ledger.settlements()]
    finally:
        ledger.close()
    (run_dir / "settlements.json").write_text(json.dumps(settlements, indent=1) + "\n")
    return found


def _device_purchases(run_dir: Path) -> dict[int, tuple[dict[int, int], dict[int, int], int,
                                                        int]]:
    """device -> (ok cumulative -> price, failed-while-pending cumulative -> price,
    purchases, duplicate receipts)."""
    result: dict[int, tuple[dict[int, int], dict[int, int], int, int]] = {}
    with (run_dir / "purchases.jsonl").open() as handle:
        for raw in handle:
            line = json.loads(raw)
            ok, failed, count, dup = result.setdefault(int(line["device"]), ({}, {}, 0, 0))
            count += 1
            cumulative, price = line.get("cumulative"), int(line.get("price") or 0)
            if line["result"] == "ok":
                if cumulative in ok:
                    dup += 1
                ok[int(cumulative)] = price
            elif cumulative is not None:
                failed[int(cumulative)] = price
            result[int(line["device"])] = (ok, failed, count, dup)
    return result


def check_fleet(slots: Sequence[DeviceSlot], summaries: dict[int, dict[str, Any]],
                ledger_url: str, escrow: Any, received: int, run_dir: Path) -> Verdict:
    """Compare every device's records with the ledger and the chain; writes devices.jsonl."""
    from ..ledger import open_ledger

    verdict = Verdict(devices=len(slots), provider_received=received)
    purchases = _device_purchases(run_dir)
    vouchers = dump_ledger(ledger_url, run_dir)
    ledger = open_ledger(ledger_url)
    try:
        highest = {record.channel_id: record.cumulative for record in ledger.channels()}
    finally:
        ledger.close()
    known_channels = {slot.channel for slot in slots}
    for channel_id in vouchers.keys() - known_channels:
        verdict.problems.append(f"the ledger holds channel {channel_id}, no device has it")
    with (run_dir / "devices.jsonl").open("w") as out:
        for slot in slots:
            summary = summaries.get(slot.index)
            ok, failed, count, dup = purchases.get(slot.index, ({}, {}, 0, 0))
            verdict.purchases += count
            verdict.ok += len(ok) + dup
            verdict.errors += count - len(ok) - dup
            verdict.duplicate_receipts += dup
            recovered = set(summary.get("_recovered", ())) if summary else set()
            verdict.recovered_late += len(recovered & failed.keys())
            charged = vouchers.get(slot.channel, {})
            for cumulative, increment in charged.items():
                if cumulative in ok:
                    if increment != ok[cumulative]:
                        verdict.double_charges += 1
                elif cumulative in failed:
                    if increment != failed[cumulative]:
                        verdict.double_charges += 1
                    if cumulative not in recovered:
                        verdict.charged_unanswered += 1
                else:
                    verdict.double_charges += 1
            verdict.unrecorded += sum(1 for c in ok if c not in charged)
            paid = escrow.channel(slot.channel).paid if slot.channel else 0
            accepted = highest.get(slot.channel, 0)
            if summary is None or "acked" not in summary:
                verdict.problems.append(f"device {slot.index} reported no record")
                acked = 0
            else:
                acked = int(summary["acked"])
                if summary.get("address") != slot.address:
                    verdict.problems.append(f"device {slot.index} reported address "
                                            f"{summary.get('address')}, made {slot.address}")
            own = sum(ok.values()) + sum(p for c, p in failed.items() if c in recovered)
            if not paid == accepted == acked == own:
                verdict.mismatched_channels.append({
                    "device": slot.index, "channel": slot.channel, "chain_paid": paid,
                    "ledger": accepted, "device_acked": acked, "device_receipts": own})
            verdict.device_paid += acked
            verdict.ledger_accepted += accepted
            verdict.chain_paid += paid
            out.write(json.dumps({
                "device": slot.index, "address": slot.address, "channel": slot.channel,
                "purchases": count, "ok": len(ok), "device_acked": acked,
                "ledger_accepted": accepted, "ledger_vouchers": len(charged),
                "chain_paid": paid, "mqtt_connects": (summary or {}).get("connects"),
                "mqtt_retransmits": (summary or {}).get("retransmits"),
                "by_product": (summary or {}).get("by_product")}) + "\n")
    return verdict
