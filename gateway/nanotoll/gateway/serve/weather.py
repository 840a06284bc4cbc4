"""Weather: a deterministic nowcast for a position, altitude and time, integers only.

The same (lat, lon, alt, t) always gives the same bytes, in every gateway process: a
smooth climatology (latitude, season, time of day, lapse rate with altitude) plus
reproducible "weather" drawn from keccak of the 0.1° grid cell and the 10-minute slot.
Units: micro-degrees, metres, unix seconds; temperature in tenths of a degree Celsius,
wind in tenths of a metre per second, pressure in pascals.
"""

from __future__ import annotations

import struct

from ...protocol.cbor import FlatMapEncoder
from ...protocol.keccak import keccak256
from .base import Param, Params, ProductContext, bad_params, lat_param, lon_param

SLOT = 600  # seconds per nowcast step
CELL = 100_000  # micro-degrees per grid cell (0.1°)
PAST = 86_400  # how far back a nowcast may be asked for
AHEAD = 6 * 3600  # and how far ahead


_THREE_INT64 = struct.Struct(">qqq")


def _noise(a: int, b: int, c: int) -> bytes:
    return keccak256(_THREE_INT64.pack(a, b, c))


class WeatherProvider:
    """The built-in ``weather`` product."""

    name = "weather"
    price = 1500
    description = "nowcast for a position, altitude and time"
    params = {"lat": lat_param(), "lon": lon_param(),
              "alt": Param("int", required=False, low=-500, high=20_000),
              "t": Param("int", required=False)}

    def __init__(self, context: ProductContext | None = None) -> None:
        self.name = context.name if context is not None else type(self).name
        self._encode = FlatMapEncoder().encode

    def check(self, params: Params, now: int) -> None:
        t = params.get("t", now)
        if not now - PAST <= t <= now + AHEAD:
            raise bad_params(f"t must be in {now - PAST}..{now + AHEAD}, got {t}")

    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        lat, lon = int(params["lat"]), int(params["lon"])
        alt, t = int(params.get("alt", 0)), int(params.get("t", now))
        slot = t - t % SLOT
        cell_lat, cell_lon = lat // CELL, lon // CELL
        noise = _noise(cell_lat, cell_lon, slot)
        day_noise = _noise(cell_lat // 10, cell_lon // 10, slot // 86_400)

        abs_lat_deg = abs(lat) // 1_000_000
        # Sea-level climatology in tenths of °C: warm tropics, cold poles.
        base = 300 - abs_lat_deg * 6
        # Season: a triangle wave over the year, opposite in the two hemispheres.
        day_of_year = (t // 86_400) % 365
        season = abs(day_of_year - 182) * 2 * abs_lat_deg // 91 - abs_lat_deg * 2
        if lat >= 0:
            season = -season
        # Local solar hour from longitude; warmest at 15:00, coldest at 03:00.
        local = (t + lon * 240 // 1_000_000) % 86_400
        diurnal = 60 - abs(local - 54_000) * 120 // 43_200
        lapse = alt * 65 // 1000
        temp = base + season + diurnal - lapse + (noise[0] % 31) - 15 + (day_noise[0] % 41) - 20

        pressure = 101_325 - alt * 12 + ((noise[1] << 8 | noise[2]) % 3_001) - 1_500
        wind = 10 + noise[3] % 140 + alt * (noise[4] % 20) // 1000
        gust = wind + noise[5] % 80
        precip = max(0, (noise[6] % 100) - 70) * 100  # micrometres per hour
        cloud_base = 300 + (noise[7] << 8 | noise[8]) % 2_700
        visibility = 10_000 if precip == 0 else 10_000 - precip * 2
        return self._encode({
            "lat": lat, "lon": lon, "alt": alt, "t": slot,
            "temp": temp,
            "dewpoint": temp - 20 - noise[9] % 80,
            "pressure": pressure,
            "wind_dir": (noise[10] << 8 | noise[11]) % 360,
            "wind": wind,
            "gust": gust,
            "precip": precip,
            "cloud_base": cloud_base,
            "visibility": max(visibility, 500),
            "icing": temp <= 0 and precip > 0 and alt >= cloud_base,
            "valid": SLOT,
        })
