"""The METAR reader and the plugin, on the observations the package ships."""

from __future__ import annotations

import calendar
from pathlib import Path

import cbor2
import pytest
from nanotoll.gateway.serve.base import ProductContext
from nanotoll.gateway.serve.params import check_params
from nanotoll.protocol.errors import ErrorCode, ProtocolError
from nanotoll_metar import MetarNowcast, parse_metar
from nanotoll_metar.metar import MetarError
from nanotoll_metar.plugin import distance_m

BERLIN = {"lat": 52_520_008, "lon": 13_404_954}
NOW = calendar.timegm((2026, 12, 3, 12, 10, 0))


def started(options: dict[str, str] | None = None) -> MetarNowcast:
    plugin = MetarNowcast(ProductContext("metar", options or {}))
    plugin.start()
    return plugin


def test_a_report_with_gusts_rain_and_a_trend() -> None:
    seen = parse_metar("EDDH 031150Z 26015G27KT 8000 -RA SCT012 BKN020 07/05 Q1008 "
                       "TEMPO 4000 RA")
    assert (seen.station, seen.day, seen.hour, seen.minute) == ("EDDH", 3, 11, 50)
    assert (seen.wind_dir, seen.wind_kt, seen.gust_kt) == (260, 15, 27)
    assert (seen.visibility_m, seen.weather) == (8000, ("-RA",))
    assert seen.clouds == (("SCT", 1200, ""), ("BKN", 2000, ""))
    assert (seen.temp_c, seen.dewpoint_c, seen.qnh_hpa) == (7, 5, 1008)
    assert seen.trend == "TEMPO 4000 RA"


def test_cavok_minus_temperatures_variable_wind_and_metres_per_second() -> None:
    seen = parse_metar("METAR LOWW 031150Z VRB03MPS CAVOK M02/M05 Q1021 NOSIG")
    assert (seen.wind_dir, seen.wind_kt, seen.visibility_m) == (None, 6, 9999)
    assert (seen.temp_c, seen.dewpoint_c, seen.trend) == (-2, -5, "NOSIG")


@pytest.mark.parametrize("report", ["", "EDDB", "EDDB 0311Z 24012KT 9999 06/02 Q1012",
                                    "EDDB 031150Z 9999 FEW025 06/02 Q1012"])
def test_a_report_missing_its_groups_is_refused(report: str) -> None:
    with pytest.raises(MetarError):
        parse_metar(report)


def test_the_nearest_station_is_served_with_its_distance_and_age() -> None:
    plugin = started()
    check_params(plugin.params, BERLIN)
    answer = cbor2.loads(plugin.serve(BERLIN, NOW, bytes(20)))
    assert answer["station"] == "EDDB"
    assert answer["distance_m"] == distance_m(BERLIN["lat"], BERLIN["lon"], 52_366_700,
                                              13_503_300)
    assert 15_000 < answer["distance_m"] < 20_000
    assert answer["observed"] == calendar.timegm((2026, 12, 3, 11, 50, 0))
    assert answer["age"] == 20 * 60
    assert answer["raw"].startswith("EDDB 031150Z")
    assert plugin.serve(BERLIN, NOW, bytes(20)) == plugin.serve(BERLIN, NOW, b"\x01" * 20)


def test_no_station_within_the_radius_is_bad_params() -> None:
    plugin = started()
    atlantic = {"lat": 45_000_000, "lon": -30_000_000}
    with pytest.raises(ProtocolError) as caught:
        plugin.check(atlantic, NOW)
    assert caught.value.code == ErrorCode.BAD_PARAMS
    plugin.check({**BERLIN, "radius_km": 20}, NOW)
    with pytest.raises(ProtocolError):
        plugin.check({**BERLIN, "radius_km": 5}, NOW)


def test_a_configured_file_replaces_the_shipped_one(tmp_path: Path) -> None:
    data = tmp_path / "obs.txt"
    data.write_text("month 2026-12\nEDDT 52.5597 13.2877 37 | "
                    "EDDT 031220Z 24010KT 9999 FEW030 05/01 Q1013 NOSIG\n")
    answer = cbor2.loads(started({"file": str(data)}).serve(BERLIN, NOW, bytes(20)))
    assert answer["station"] == "EDDT"
    data.write_text("EDDT 52.5 13.2 37 | EDDT 031220Z 24010KT 9999 05/01 Q1013\n")
    with pytest.raises(ValueError, match="before the month line"):
        started({"file": str(data)})
