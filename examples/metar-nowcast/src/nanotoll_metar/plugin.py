"""The ``metar`` product: the observation of the airport nearest a position.

Params (micro-degrees, as the gateway's built-ins): ``lat``, ``lon`` and an optional
``radius_km`` (default 150). A position with no station within the radius is refused
before any charge (``BAD_PARAMS``). The answer is a CBOR map of integers and text::

    {"station": "EDDB", "lat": .., "lon": .., "elevation_m": 48, "distance_m": ..,
     "observed": unix seconds, "age": seconds before now,
     "wind_dir": 240 or null, "wind_kt": 12, "gust_kt": null, "visibility_m": 9999,
     "weather": ["-RA"], "clouds": [["FEW", 2500, ""], ..], "temp_c": 6,
     "dewpoint_c": 2, "qnh_hpa": 1012, "trend": "NOSIG", "raw": "EDDB 031150Z .."}

The same params at the same ``now`` give the same bytes in every gateway process.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cbor2
from nanotoll.gateway.serve.base import (
    Param,
    Params,
    ProductContext,
    bad_params,
    lat_param,
    lon_param,
)

from .metar import Observation, parse_metar

EARTH_RADIUS_M = 6_371_000
DEFAULT_RADIUS_KM = 150


@dataclass(frozen=True, slots=True)
class Station:
    icao: str
    lat: int  # micro-degrees
    lon: int
    elevation_m: int
    report: str
    observation: Observation
    observed: int  # unix seconds


def distance_m(lat1: int, lon1: int, lat2: int, lon2: int) -> int:
    """Great-circle distance between two positions in micro-degrees (haversine)."""
    p1, p2 = math.radians(lat1 / 1e6), math.radians(lat2 / 1e6)
    dp, dl = p2 - p1, math.radians((lon2 - lon1) / 1e6)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(2 * EARTH_RADIUS_M * math.asin(math.sqrt(a)))


def read_observations(text: str, source: str) -> list[Station]:
    """The stations of an observations file (the format of data/observations.txt)."""
    year = month = 0
    stations = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("month "):
            year, month = (int(part) for part in line.split()[1].split("-"))
            continue
        try:
            place, report = (part.strip() for part in line.split("|", 1))
            icao, lat, lon, elevation = place.split()
            observation = parse_metar(report)
        except ValueError as exc:
            raise ValueError(f"{source}:{number}: {exc}") from None
        if not month:
            raise ValueError(f"{source}:{number}: a station before the month line")
        observed = calendar.timegm((year, month, observation.day, observation.hour,
                                    observation.minute, 0))
        stations.append(Station(icao, round(float(lat) * 1e6), round(float(lon) * 1e6),
                                int(elevation), report, observation, observed))
    if not stations:
        raise ValueError(f"{source}: no stations")
    return stations


class MetarNowcast:
    name = "metar"
    price = 900
    description = "nearest airport weather observation (METAR)"
    params = {"lat": lat_param(), "lon": lon_param(),
              "radius_km": Param("int", required=False, low=1, high=500)}

    def __init__(self, context: ProductContext) -> None:
        self.name = context.name
        self._file = context.options.get("file")
        self._stations: list[Station] = []

    def start(self) -> None:
        """Read the observations: the configured file or the one this package ships."""
        if self._file is not None:
            path = Path(str(self._file))
            self._stations = read_observations(path.read_text(), str(path))
        else:
            shipped = resources.files(__package__).joinpath("data/observations.txt")
            self._stations = read_observations(shipped.read_text(), "observations.txt")

    def stop(self) -> None:
        self._stations = []

    def _nearest(self, params: Params) -> tuple[Station, int]:
        lat, lon = params["lat"], params["lon"]
        radius_m = params.get("radius_km", DEFAULT_RADIUS_KM) * 1000
        best = min(((distance_m(lat, lon, s.lat, s.lon), s.icao, s) for s in self._stations),
                   default=None)
        if best is None or best[0] > radius_m:
            raise bad_params(f"no station within {radius_m // 1000} km")
        return best[2], best[0]

    def check(self, params: Params, now: int) -> None:
        self._nearest(params)

    def serve(self, params: Params, now: int, buyer: bytes) -> bytes:
        station, distance = self._nearest(params)
        seen = station.observation
        answer: dict[str, Any] = {
            "station": station.icao, "lat": station.lat, "lon": station.lon,
            "elevation_m": station.elevation_m, "distance_m": distance,
            "observed": station.observed, "age": now - station.observed,
            "wind_dir": seen.wind_dir, "wind_kt": seen.wind_kt, "gust_kt": seen.gust_kt,
            "visibility_m": seen.visibility_m, "weather": list(seen.weather),
            "clouds": [list(cloud) for cloud in seen.clouds], "temp_c": seen.temp_c,
            "dewpoint_c": seen.dewpoint_c, "qnh_hpa": seen.qnh_hpa, "trend": seen.trend,
            "raw": station.report,
        }
        return cbor2.dumps(answer, canonical=True)
