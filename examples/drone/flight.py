# Example drone application: fly a short flight plan and buy what the flight needs.
#
# The app only talks to the agent's one call, agent.buy(); keys, budget, vouchers,
# receipts and retries stay inside the agent. Run it on the unix port with
#   micropython boards/unix/main.py --config CONFIG --app flight
# or on a board by calling `await fly(agent, PLAN, board.now())` from its main.py.
#
# Coordinates are micro-degrees, heights metres, times unix seconds.

import json
import cbor
from errors import AgentError, PolicyDenied, error_code

# Berlin, a short hop north along the corridor BER-N7
PLAN = {
    "corridor": "BER-N7",
    "waypoints": [
        (52520008, 13404954, 120),
        (52560000, 13410000, 150),
        (52600000, 13420000, 150),
        (52640000, 13430000, 120),
    ],
}


def _box(a, b, margin=20000):
    return [min(a[0], b[0]) - margin, min(a[1], b[1]) - margin,
            max(a[0], b[0]) + margin, max(a[1], b[1]) + margin]


def _say(**kw):
    print(json.dumps(kw))


async def fly(agent, plan, now, max_price=None):
    """Buy a corridor grant, then navigation and weather for every leg.

    Returns the number of purchases made. A refused purchase (policy, budget) ends
    the flight on the ground rather than flying blind.
    """
    bought = 0
    t = now or 0
    try:
        grant = await agent.buy(
            "route", {"corridor": plan["corridor"], "from": t, "until": t + 900},
            max_price=max_price)
        bought += 1
        _say(step="route", corridor=plan["corridor"], grant_bytes=len(grant))
        points = plan["waypoints"]
        for i in range(len(points) - 1):
            a, b = points[i], points[i + 1]
            nav = await agent.buy("nav", {"box": _box(a, b)}, max_price=max_price)
            bought += 1
            weather = await agent.buy(
                "weather", {"lat": b[0], "lon": b[1], "alt": b[2], "t": t + 60 * (i + 1)},
                max_price=max_price)
            bought += 1
            try:
                keys = sorted(cbor.loads(weather))
            except Exception:
                keys = []
            _say(step="leg", leg=i + 1, nav_bytes=len(nav), weather=keys,
                 cumulative=agent.state.cumulative)
    except PolicyDenied as exc:
        _say(step="grounded", error=error_code(exc), message=str(exc))
    except AgentError as exc:
        _say(step="aborted", error=error_code(exc), message=str(exc))
    return bought
