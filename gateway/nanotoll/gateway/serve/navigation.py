"""Navigation: airspace, geofence and waypoint updates for a bounding box, offline.

A deterministic world: each 0.1° grid cell draws, from keccak of its coordinates and the
UTC day, whether it holds a controlled or restricted airspace, a temporary geofence and
named waypoints. A box spans at most 1° × 1° so that the answer stays well inside one
response; each list is capped at 32 entries, nearest cells first.
"""

from __future__ import annotations

from typing import Any

from ...protocol import cbor
from ...protocol.keccak import keccak256
from .base import MAX_LAT, MAX_LON, Param, Params, ProductContext, bad_params

CELL = 100_000  # micro-degrees (0.1°)
MAX_SPAN = 1_000_000  # micro-degrees (1°) per side
MAX_ITEMS = 32
AIRSPACE_KINDS = ("ctr", "restricted", "danger", "prohibited")
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


BOX = Param("ints", length=4, low=-MAX_LON, high=MAX_LON,
            hint="[lat_min, lon_min, lat_max, lon_max] in micro-degrees")


def parse_box(params: Params) -> tuple[int, int, int, int]:
    """The box's corners, checked against each other (the schema checked their types)."""
    lat_min, lon_min, lat_max, lon_max = params["box"]
    if not (-MAX_LAT <= lat_min < lat_max <= MAX_LAT and -MAX_LON <= lon_min < lon_max <= MAX_LON):
        raise bad_params("box corners out of range or not min < max")
    if lat_max - lat_min > MAX_SPAN or lon_max - lon_min > MAX_SPAN:
        raise bad_params(f"box spans at most {MAX_SPAN} micro-degrees per side")
    return lat_min, lon_min, lat_max, lon_max


def _name(seed: bytes) -> str:
    return "".join(LETTERS[b % len(LETTERS)] for b in seed[:5])


class NavigationProvider:
    """The built-in ``nav`` product."""

    name = "nav"
    price = 4000
    description = "airspace, geofence and waypoint updates"
    params = {"box": BOX}

    def __init__(self, context: ProductContext | None = None) -> None:
        self.name = context.name if context is not None else type(self).name

    def check(self, params: Params, now: int) -> None:
        parse_box(params)

    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        lat_min, lon_min, lat_max, lon_max = parse_box(params)
        day = now // 86_400
        centre_lat, centre_lon = (lat_min + lat_max) // 2, (lon_min + lon_max) // 2
        cells = [
            (cell_lat, cell_lon)
            for cell_lat in range(lat_min // CELL, (lat_max - 1) // CELL + 1)
            for cell_lon in range(lon_min // CELL, (lon_max - 1) // CELL + 1)
        ]
        cells.sort(key=lambda c: (abs(c[0] * CELL + CELL // 2 - centre_lat)
                                  + abs(c[1] * CELL + CELL // 2 - centre_lon), c))
        airspaces: list[list[Any]] = []
        geofences: list[list[Any]] = []
        waypoints: list[list[Any]] = []
        for cell_lat, cell_lon in cells:
            seed = keccak256(cell_lat.to_bytes(4, "big", signed=True)
                          + cell_lon.to_bytes(4, "big", signed=True))
            daily = keccak256(seed + day.to_bytes(8, "big"))
            lat = cell_lat * CELL + (seed[0] << 8 | seed[1]) % CELL
            lon = cell_lon * CELL + (seed[2] << 8 | seed[3]) % CELL
            if seed[4] < 40 and len(airspaces) < MAX_ITEMS:
                floor = 0 if seed[5] < 128 else 150 * (seed[6] % 10)
                ceiling = floor + 300 * (1 + seed[14] % 10)
                airspaces.append([_name(seed[7:]), AIRSPACE_KINDS[seed[12] % 4], lat, lon,
                                  1_000 + 500 * (seed[13] % 20), floor, ceiling])
            if daily[0] < 20 and len(geofences) < MAX_ITEMS:
                start = day * 86_400 + 3_600 * (daily[1] % 20)
                geofences.append([_name(daily[2:]), lat, lon, 200 + 100 * (daily[7] % 20),
                                  start, start + 3_600 * (1 + daily[8] % 4)])
            if seed[15] < 64 and len(waypoints) < MAX_ITEMS:
                waypoints.append([_name(seed[16:]), lat, lon])
        return cbor.dumps({
            "box": [lat_min, lon_min, lat_max, lon_max],
            "as_of": day * 86_400,
            "airspaces": airspaces,
            "geofences": geofences,
            "waypoints": waypoints,
        })
