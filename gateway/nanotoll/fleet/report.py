"""``nanotoll fleet report RUN_DIR``: one HTML page with plots, PNGs alongside.

Reads what ``nanotoll fleet run`` wrote: summary.json, purchases.jsonl, vouchers.jsonl,
settlements.json, timeline.jsonl. Writes report.html and these PNGs into RUN_DIR:

  purchases_per_s.png   completed purchases per second (ok and errors)
  latency.png           p50 / p90 / p99 latency over time
  revenue.png           revenue and purchases per product
  settlement.png        unredeemed amount and settlement lag over time
  gas.png               gas spent on redemptions over time
  cpu.png               CPU cores used by devices, gateways, broker, chain, database

Time is seconds since go; the warm-up is shaded and chaos events are vertical lines.
The unredeemed amount and the lag are exact, from every voucher's acceptance time and
the confirmation time of the settlement that covered it.
"""

from __future__ import annotations

import html
import json
from bisect import bisect_left
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..figures import per_second, percentiles_over_time, revenue_by_product

PLOTS = ("purchases_per_s", "latency", "revenue", "settlement", "gas", "cpu")


class ReportError(RuntimeError):
    """The directory is not a fleet run, or its files do not parse."""


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _load(run_dir: Path) -> dict[str, Any]:
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        raise ReportError(f"{run_dir} has no summary.json: is it a 'nanotoll fleet run' "
                          "directory?")
    try:
        summary = json.loads(summary_path.read_text())
        purchases = _jsonl(run_dir / "purchases.jsonl")
        vouchers = _jsonl(run_dir / "vouchers.jsonl")
        timeline = _jsonl(run_dir / "timeline.jsonl")
        settlements_path = run_dir / "settlements.json"
        settlements = json.loads(settlements_path.read_text()) \
            if settlements_path.exists() else []
    except ValueError as exc:
        raise ReportError(f"{run_dir}: a file does not parse: {exc}") from None
    return {"summary": summary, "purchases": purchases, "vouchers": vouchers,
            "timeline": timeline, "settlements": settlements}


def settlement_curves(vouchers: list[dict[str, Any]], settlements: list[dict[str, Any]],
                      go_ms: float, step: float = 1.0
                      ) -> tuple[list[float], list[int], list[float]]:
    """(times, unredeemed units, lag seconds): at each time, the units accepted but not
    yet covered by a confirmed redemption, and the age of the oldest such voucher."""
    confirmed: dict[int, list[tuple[int, int]]] = defaultdict(list)  # ch -> (ms, cum)
    for s in settlements:
        if s.get("state") == "confirmed":
            for channel, cumulative, outcome in s["items"]:
                if outcome in (None, "paid"):
                    confirmed[int(channel)].append((int(s["updated_ms"]), int(cumulative)))
    spans: list[tuple[float, float, int]] = []  # (accepted s, redeemed s or inf, units)
    for v in vouchers:
        accepted = (v["accepted_ms"] - go_ms) / 1000
        redeemed = float("inf")
        for ms, cumulative in sorted(confirmed.get(int(v["channel"]), ())):
            if cumulative >= v["cumulative"]:
                redeemed = (ms - go_ms) / 1000
                break
        spans.append((accepted, redeemed, int(v["increment"])))
    if not spans:
        return [], [], []
    end = max(max(r for _, r, _ in spans if r != float("inf")) if any(
        r != float("inf") for _, r, _ in spans) else 0, max(a for a, _, _ in spans)) + step
    start = min(0.0, min(a for a, _, _ in spans))
    times, unredeemed, lag = [], [], []
    spans.sort()
    accepted_times = [a for a, _, _ in spans]
    t = start
    while t <= end:
        upto = bisect_left(accepted_times, t + 1e-9)
        open_units = 0
        oldest = None
        for a, r, units in spans[:upto]:
            if r > t:
                open_units += units
                if oldest is None:
                    oldest = a
        times.append(round(t, 3))
        unredeemed.append(open_units)
        lag.append(round(t - oldest, 3) if oldest is not None else 0.0)
        t += step
    return times, unredeemed, lag


def _time_axes(ax: Any, summary: dict[str, Any]) -> None:
    warmup = summary.get("options", {}).get("warmup") or 0
    if warmup:
        ax.axvspan(0, warmup, color="#dddddd", alpha=0.6, label="warm-up")
    for event in summary.get("events", []):
        if event.get("event") in ("broker_restart", "gateway_kill") and event.get("t"):
            ax.axvline(event["t"], color="#c0392b", linestyle="--", linewidth=1)
            ax.annotate(event["event"].replace("_", " "), (event["t"], 1), rotation=90,
                        xycoords=("data", "axes fraction"), va="top", ha="right",
                        fontsize=8, color="#c0392b")
    ax.set_xlabel("seconds since go")
    ax.grid(True, alpha=0.3)


def _plots(data: dict[str, Any], run_dir: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, purchases = data["summary"], data["purchases"]
    captions: dict[str, str] = {}

    def save(fig: Any, name: str, caption: str) -> None:
        fig.tight_layout()
        fig.savefig(run_dir / f"{name}.png", dpi=110)
        plt.close(fig)
        captions[name] = caption

    # purchases per second ----------------------------------------------------------
    ok_per_s = per_second(p["t"] + p["latency_ms"] / 1000 for p in purchases
                          if p["result"] == "ok")
    err_per_s = per_second(p["t"] + p["latency_ms"] / 1000 for p in purchases
                           if p["result"] != "ok")
    last = max([*ok_per_s, *err_per_s, 0])
    xs = list(range(last + 1))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.plot(xs, [ok_per_s.get(x, 0) for x in xs], label="ok", color="#2874a6")
    if err_per_s:
        ax.plot(xs, [err_per_s.get(x, 0) for x in xs], label="errors", color="#c0392b")
    target = summary.get("purchases", {}).get("target_per_s")
    if target:
        ax.axhline(target, color="#7f8c8d", linestyle=":", label=f"target {target:g}/s")
    _time_axes(ax, summary)
    ax.set_ylabel("purchases completed per second")
    ax.legend(loc="lower right", fontsize=8)
    save(fig, "purchases_per_s", "Purchases completed per second (by completion time).")

    # latency percentiles over time ---------------------------------------------------
    span = max((p["t"] for p in purchases), default=0)
    bucket = max(1.0, round(span / 40))
    middles, curves = percentiles_over_time(((p["t"], p["latency_ms"]) for p in purchases),
                                            bucket)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for label, color in (("p50", "#2874a6"), ("p90", "#f39c12"), ("p99", "#c0392b")):
        ax.plot(middles, curves[label], label=label, color=color, marker=".")
    if middles:
        ax.set_yscale("log")
    _time_axes(ax, summary)
    ax.set_ylabel("latency, ms (log)")
    ax.legend(loc="upper right", fontsize=8)
    save(fig, "latency", f"Purchase latency percentiles per {bucket:g} s of start time, "
                         "as the device measured it (buy() call to verified receipt).")

    # revenue per product -------------------------------------------------------------
    revenue, count = revenue_by_product((p["product"], int(p.get("price") or 0))
                                        for p in purchases if p["result"] == "ok")
    names = sorted(revenue)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bars = ax.bar(names, [revenue[n] / 1e6 for n in names], color="#27ae60")
    for bar, name in zip(bars, names, strict=True):
        ax.annotate(f"{count[name]:,} sold", (bar.get_x() + bar.get_width() / 2,
                                              bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("revenue, USD (6-decimal units / 1e6)")
    ax.grid(True, axis="y", alpha=0.3)
    save(fig, "revenue", "Revenue and purchases per product.")

    # unredeemed amount and settlement lag --------------------------------------------
    go_ms = float(summary.get("go_wall", 0)) * 1000
    times, unredeemed, lag = settlement_curves(data["vouchers"], data["settlements"], go_ms)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.plot(times, [u / 1e6 for u in unredeemed], color="#8e44ad", label="unredeemed")
    ax.set_ylabel("unredeemed, USD", color="#8e44ad")
    _time_axes(ax, summary)
    other = ax.twinx()
    other.plot(times, lag, color="#16a085", label="settlement lag")
    other.set_ylabel("oldest unredeemed voucher, s", color="#16a085")
    save(fig, "settlement", "Accepted but not yet redeemed on-chain (confirmed), and the "
                            "age of the oldest such voucher. The final step is "
                            "'settle now' after the devices stopped.")

    # gas ---------------------------------------------------------------------------
    confirmed = sorted((s["updated_ms"], s.get("gas_used") or 0, len(s["items"]))
                       for s in data["settlements"] if s.get("state") == "confirmed")
    fig, ax = plt.subplots(figsize=(9, 3.6))
    total = 0
    xs2, ys2 = [0.0], [0]
    for ms, gas, _items in confirmed:
        total += gas
        xs2 += [(ms - go_ms) / 1000, (ms - go_ms) / 1000]
        ys2 += [ys2[-1], total]
    ax.plot(xs2, [y / 1e6 for y in ys2], color="#d35400")
    for ms, _gas, items in confirmed if len(confirmed) <= 15 else ():
        ax.annotate(f"{items} vouchers", ((ms - go_ms) / 1000, 0), fontsize=7, rotation=90,
                    xycoords=("data", "axes fraction"), va="bottom")
    _time_axes(ax, summary)
    ax.set_ylabel("redeem gas, millions (cumulative)")
    provisioning = summary.get("provisioning", {})
    save(fig, "gas", f"Gas of confirmed redeem transactions over time ({len(confirmed)} "
                     f"transactions, {total:,} gas). Provisioning before go: "
                     f"{provisioning.get('open_many_transactions', '?')} openMany "
                     f"transactions, {provisioning.get('open_many_gas', 0):,} gas.")

    # cpu ---------------------------------------------------------------------------
    samples = [s for s in data["timeline"] if "cpu_cores" in s]
    if samples:
        fig, ax = plt.subplots(figsize=(9, 3.6))
        parts = [k for k in samples[-1]["cpu_cores"]
                 if any(s["cpu_cores"].get(k, 0) > 0.005 for s in samples)]
        ax.stackplot([s["t"] for s in samples],
                     *[[s["cpu_cores"].get(k, 0) for s in samples] for k in parts],
                     labels=parts)
        ax.axhline(summary.get("options", {}).get("cores", 2), color="#7f8c8d",
                   linestyle=":")
        _time_axes(ax, summary)
        ax.set_ylabel("CPU cores")
        ax.legend(loc="upper left", fontsize=8)
        save(fig, "cpu", "CPU cores used by each part (stacked); the dotted line is the "
                         "machine's core count.")
    return captions


def _rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    o = summary.get("options", {})
    p = summary.get("purchases", {})
    c = summary.get("check", {})
    m = summary.get("memory", {})
    lat = p.get("latency_ms", {})
    rows = [
        ("result", "PASSED" if summary.get("passed") else
         f"FAILED {summary.get('failure', '')}"),
        ("devices × rate", f"{o.get('devices')} × {o.get('rate')}/s for {o.get('duration')} s"
                           f" (+{o.get('warmup', 0)} s warm-up)"),
        ("gateways, ledger", f"{o.get('gateways')}, {o.get('ledger')}"),
        ("chaos", ", ".join(o.get("chaos") or []) or "none"),
        ("purchases ok / errors", f"{p.get('ok')} / {p.get('failed')}"),
        ("throughput", f"{p.get('per_s')}/s (target {p.get('target_per_s')}/s)"),
        ("latency p50 / p90 / p99 / max", f"{lat.get('p50')} / {lat.get('p90')} / "
                                          f"{lat.get('p99')} / {lat.get('max')} ms"),
        ("double charges", str(c.get("double_charges"))),
        ("paid by devices / ledger / chain / provider",
         f"{c.get('device_paid')} / {c.get('ledger_accepted')} / {c.get('chain_paid')} / "
         f"{c.get('provider_received')}"),
        ("settled = paid", str(c.get("settled_equals_paid"))),
        ("MicroPython heap per agent", f"{m.get('heap_per_agent_connected_bytes')} bytes "
                                       f"connected, {m.get('heap_per_agent_after_bytes')} "
                                       "after the run"),
        ("RSS per agent", f"{m.get('rss_kib_per_agent_ready')} KiB (process RSS / agents)"),
    ]
    cpu = summary.get("cpu", {})
    if cpu:
        rows.append(("CPU cores used", ", ".join(
            f"{k} {v['cores']}" for k, v in cpu.items() if isinstance(v, dict))))
    return rows


def write_report(run_dir: Path) -> Path:
    """Write report.html and the PNGs; returns the page's path."""
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a directory")
    data = _load(run_dir)
    captions = _plots(data, run_dir)
    summary = data["summary"]
    table = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                      for k, v in _rows(summary))
    figures = "\n".join(
        f'<figure><img src="{name}.png" alt="{name}"><figcaption>{html.escape(text)}'
        f"</figcaption></figure>" for name, text in captions.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>nanotoll fleet run {html.escape(run_dir.name)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ text-align: left; padding: 4px 12px; border-bottom: 1px solid #ddd; }}
figure {{ margin: 0 0 2em 0; }} img {{ max-width: 100%; }}
figcaption {{ font-size: 0.9em; color: #555; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.8em; }}
</style></head><body>
<h1>nanotoll fleet run {html.escape(run_dir.name)}</h1>
<table>{table}</table>
{figures}
<h2>summary.json</h2>
<pre>{html.escape(json.dumps(summary, indent=1, sort_keys=True))}</pre>
</body></html>
"""
    path = run_dir / "report.html"
    path.write_text(page)
    return path
