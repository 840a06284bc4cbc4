"""firmware/policy.py under the real MicroPython unix port: every limit is tried past its edge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.agent_helpers import run_mp

PROV = "ab" * 20
OTHER = "cd" * 20

SCRIPT = """
import json, sys
from policy import Policy
from store import State, new_history
from errors import PolicyDenied, BudgetExhausted, PriceTooHigh
cases = json.loads(open(sys.argv[1]).read())
for case in cases:
    try:
        policy = Policy(case["policy"])
    except ValueError as exc:
        print(json.dumps({"result": "config", "message": str(exc)}))
        continue
    st = State(1)
    s = case.get("state", {})
    st.spent = s.get("spent", 0)
    st.cumulative = s.get("cumulative", st.spent)
    st.by_product = s.get("by_product", {})
    # the cases give [unix time, amount] pairs, as the record does
    st.history = new_history(s.get("history", []))
    try:
        policy.check(case.get("provider", PROV), case.get("product", "weather"), case["price"],
                     case.get("increase", case["price"]), st, case.get("now"),
                     case.get("max_price"))
        result = "ok"
    except BudgetExhausted:
        result = "BudgetExhausted"
    except PriceTooHigh:
        result = "PriceTooHigh"
    except PolicyDenied:
        result = "PolicyDenied"
    print(json.dumps({"result": result}))
""".replace("PROV", repr(PROV))

BASE = {"deposit": 100_000, "budget": 10_000}
NOW = 1_767_225_600

CASES = [
    # (name, case, expected)
    ("within budget", {"policy": BASE, "price": 1500, "state": {"spent": 8500}}, "ok"),
    ("past budget by one", {"policy": BASE, "price": 1501, "state": {"spent": 8500}},
     "BudgetExhausted"),
    ("budget above deposit", {"policy": {"deposit": 100, "budget": 101}, "price": 1}, "config"),
    ("unknown key", {"policy": {**BASE, "budgett": 1}, "price": 1}, "config"),
    ("negative budget", {"policy": {"deposit": 10, "budget": -1}, "price": 1}, "config"),
    ("deposit reached", {"policy": BASE, "price": 10,
                         "state": {"spent": 0, "cumulative": 99_995}}, "BudgetExhausted"),
    ("max_price argument", {"policy": BASE, "price": 1500, "max_price": 1499}, "PriceTooHigh"),
    ("max_price equal", {"policy": BASE, "price": 1500, "max_price": 1500}, "ok"),
    ("policy max unit price", {"policy": {**BASE, "max_unit_price": 1000}, "price": 1001},
     "PriceTooHigh"),
    ("provider allowed", {"policy": {**BASE, "providers": ["0x" + PROV.upper()]}, "price": 1},
     "ok"),
    ("provider not allowed", {"policy": {**BASE, "providers": ["0x" + OTHER]}, "price": 1},
     "PolicyDenied"),
    ("provider cap", {"policy": {**BASE, "provider_caps": {"0x" + PROV: 5000}}, "price": 1500,
                      "state": {"spent": 4000}}, "BudgetExhausted"),
    ("product cap", {"policy": {**BASE, "product_caps": {"weather": 3000}}, "price": 1500,
                     "state": {"spent": 1600, "by_product": {"weather": 1600}}},
     "BudgetExhausted"),
    ("other product under cap", {"policy": {**BASE, "product_caps": {"weather": 3000}},
                                 "product": "nav", "price": 1500,
                                 "state": {"spent": 1600, "by_product": {"weather": 1600}}},
     "ok"),
    ("per hour", {"policy": {**BASE, "per_hour": 4000}, "price": 1500, "now": NOW,
                  "state": {"history": [[NOW - 3500, 1500], [NOW - 10, 1500]]}},
     "PolicyDenied"),
    ("per hour, old entry out of the window", {"policy": {**BASE, "per_hour": 4000},
                                               "price": 1500, "now": NOW,
                                               "state": {"history": [[NOW - 3600, 1500],
                                                                     [NOW - 10, 1500]]}},
     "ok"),
    ("per minute", {"policy": {**BASE, "per_minute": 2}, "price": 1, "now": NOW,
                    "state": {"history": [[NOW - 30, 1], [NOW - 5, 1]]}}, "PolicyDenied"),
    ("per minute, window passed", {"policy": {**BASE, "per_minute": 2}, "price": 1, "now": NOW,
                                   "state": {"history": [[NOW - 61, 1], [NOW - 5, 1]]}}, "ok"),
    ("expiry guard", {"policy": {**BASE, "expiry": NOW + 7200, "expiry_margin": 7200},
                      "price": 1, "now": NOW}, "PolicyDenied"),
    ("expiry beyond margin", {"policy": {**BASE, "expiry": NOW + 7201, "expiry_margin": 7200},
                              "price": 1, "now": NOW}, "ok"),
    ("expiry with no clock", {"policy": {**BASE, "expiry": NOW + 99999}, "price": 1},
     "PolicyDenied"),
    ("no new exposure", {"policy": BASE, "price": 1500, "increase": 0,
                         "state": {"spent": 10_000}}, "ok"),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("policy")
    (folder / "cases.json").write_text(json.dumps([case for _, case, _ in CASES]))
    out = run_mp(SCRIPT, folder, args=(str(folder / "cases.json"),))
    return [json.loads(line)["result"] for line in out.splitlines()]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[name for name, _, _ in CASES])
def test_policy_limit(results: list[str], index: int) -> None:
    assert results[index] == CASES[index][2]


def test_policy_file_loads(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({**BASE, "per_minute": 3}))
    out = run_mp("from policy import Policy\np = Policy.load('p.json')\n"
                 "print(p.budget, p.deposit, p.per_minute, p.expiry_margin)\n", tmp_path)
    assert out.split() == ["10000", "100000", "3", "3600"]
