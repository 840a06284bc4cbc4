"""Reading METAR reports (WMO FM 15) into integers: the groups a nowcast needs.

Only what a drone or a small aircraft asks of the nearest airport is decoded: wind,
visibility, present weather, clouds, temperature and dew point, QNH, and the trend. A
group this reader does not know is kept in ``other`` rather than refused, because
stations add remarks freely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

WIND = re.compile(r"(?P<dir>\d{3}|VRB)(?P<speed>\d{2,3})(G(?P<gust>\d{2,3}))?(?P<unit>KT|MPS)")
VISIBILITY = re.compile(r"\d{4}")
CLOUD = re.compile(r"(?P<cover>FEW|SCT|BKN|OVC|VV)(?P<base>\d{3})(?P<type>CB|TCU)?")
TEMPERATURE = re.compile(r"(?P<temp>M?\d{2})/(?P<dew>M?\d{2})")
QNH = re.compile(r"Q(?P<hpa>\d{4})")
WEATHER = re.compile(r"[-+]?(VC)?(MI|BC|PR|DR|BL|SH|TS|FZ)?(DZ|RA|SN|SG|PL|GR|GS|UP|BR|FG|"
                     r"FU|VA|DU|SA|HZ|SQ|FC|SS|DS)+")
TIME = re.compile(r"(?P<day>\d{2})(?P<hour>\d{2})(?P<minute>\d{2})Z")
TRENDS = ("NOSIG", "TEMPO", "BECMG")
MPS_PER_KT = 0.514444


class MetarError(ValueError):
    """A report that is not a METAR this reader understands."""


@dataclass(frozen=True, slots=True)
class Observation:
    station: str
    day: int
    hour: int
    minute: int
    wind_dir: int | None  # degrees true; None when variable
    wind_kt: int
    gust_kt: int | None
    visibility_m: int  # 9999 means 10 km or more
    weather: tuple[str, ...]
    clouds: tuple[tuple[str, int, str], ...]  # (cover, base in feet, "CB"/"TCU"/"")
    temp_c: int
    dewpoint_c: int
    qnh_hpa: int
    trend: str  # the trend groups as reported, "" without one
    other: tuple[str, ...] = field(default=())


def _celsius(text: str) -> int:
    return -int(text[1:]) if text.startswith("M") else int(text)


def parse_metar(report: str) -> Observation:
    groups = report.split()
    if groups and groups[0] in ("METAR", "SPECI"):
        groups = groups[1:]
    if len(groups) < 4 or not re.fullmatch(r"[A-Z]{4}", groups[0]):
        raise MetarError(f"not a METAR: {report!r}")
    station, time_group, *rest = groups
    when = TIME.fullmatch(time_group)
    if when is None:
        raise MetarError(f"{station}: no time group in {report!r}")
    trend_at = next((i for i, g in enumerate(rest) if g in TRENDS), len(rest))
    body, trend = rest[:trend_at], " ".join(rest[trend_at:])
    wind_dir: int | None = None
    wind_kt = -1
    gust_kt: int | None = None
    visibility = -1
    weather: list[str] = []
    clouds: list[tuple[str, int, str]] = []
    temperature: tuple[int, int] | None = None
    qnh = -1
    other: list[str] = []
    for group in body:
        if (wind := WIND.fullmatch(group)) is not None:
            factor = 1.0 if wind["unit"] == "KT" else 1 / MPS_PER_KT
            wind_dir = None if wind["dir"] == "VRB" else int(wind["dir"])
            wind_kt = round(int(wind["speed"]) * factor)
            gust_kt = round(int(wind["gust"]) * factor) if wind["gust"] else None
        elif group == "CAVOK":
            visibility = 9999
        elif VISIBILITY.fullmatch(group):
            visibility = int(group)
        elif (cloud := CLOUD.fullmatch(group)) is not None:
            clouds.append((cloud["cover"], int(cloud["base"]) * 100, cloud["type"] or ""))
        elif (temp := TEMPERATURE.fullmatch(group)) is not None:
            temperature = (_celsius(temp["temp"]), _celsius(temp["dew"]))
        elif (pressure := QNH.fullmatch(group)) is not None:
            qnh = int(pressure["hpa"])
        elif WEATHER.fullmatch(group):
            weather.append(group)
        else:
            other.append(group)
    if wind_kt < 0 or visibility < 0 or temperature is None or qnh < 0:
        raise MetarError(f"{station}: wind, visibility, temperature or QNH missing")
    return Observation(station, int(when["day"]), int(when["hour"]), int(when["minute"]),
                       wind_dir, wind_kt, gust_kt, visibility, tuple(weather), tuple(clouds),
                       temperature[0], temperature[1], qnh, trend, tuple(other))
