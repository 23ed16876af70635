"""The data-file readers: what they take (EPW, PVGIS hourly CSV, plain CSV), and for every kind
of malformed file one line naming the file, the line and the problem."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pvsim.inputs import epw, seriesfile
from pvsim.inputs.datafile import DataFileError
from pvsim.model.series import Series

PVLIB = Path(__file__).resolve().parent.parent / "data" / "pvlib"
EPW = PVLIB / "weather-greensboro.epw"
MADRID = ZoneInfo("Europe/Madrid")
UTC = dt.timezone.utc


def pvgis_csv(path: Path, year: int = 2020, hours: int | None = None, p_w=lambda h: 0.0) -> Path:
    """A PVGIS 'hourly data' CSV: its header, the table, its footer."""
    start = dt.datetime(year, 1, 1, tzinfo=UTC)
    hours = hours or int((dt.datetime(year + 1, 1, 1, tzinfo=UTC) - start).total_seconds() // 3600)
    rows = [f"{(start + dt.timedelta(hours=h)):%Y%m%d:%H}10,{p_w(h):.1f},0.0,0.0,10.0,1.0,0.0"
            for h in range(hours)]
    path.write_text("Latitude (decimal degrees):\t45.000\nLongitude (decimal degrees):\t8.000\n"
                    "Elevation (m):\t250\nRadiation database:\tPVGIS-SARAH2\n\n\n"
                    "Slope: 35 deg. \nAzimuth: 0 deg. \n"
                    "Nominal power of the PV system (c-Si) (kWp):\t1.0\nSystem losses (%):\t14.0\n"
                    "time,P,G(i),H_sun,T2m,WS10m,Int\n" + "\n".join(rows) + "\n\n"
                    "P: PV system power (W)\nG(i): Global irradiance on the inclined plane (W/m2)\n"
                    "\nPVGIS (c) European Union, 2001-2023\n")
    return path


def test_epw_gives_the_site_and_8760_hours() -> None:
    where, year = epw.read(EPW)
    assert where.name.strip('"') == "GREENSBORO PIEDMONT TRIAD INT"
    assert (where.latitude, where.longitude, where.utc_offset_hours, where.elevation_m) == \
        (36.1, -79.95, -5.0, 273.0)
    assert len(year.hours) == 8760
    noon = year.at(dt.datetime(2026, 6, 21, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))).timestamp())
    assert noon.ghi > 300 and 10 < noon.temperature_c < 40


def test_a_weather_year_places_each_hour_at_its_middle_and_folds_years() -> None:
    _, year = epw.read(EPW)
    est = dt.timezone(dt.timedelta(hours=-5))
    rec = year.hours[(31 + 9) * 24 + 12]  # 10 February, the hour ending 13:00
    for y in (1999, 2026, 2031):
        assert year.at(dt.datetime(y, 2, 10, 12, 30, tzinfo=est).timestamp()) == rec
    # 29 February reads the 28th; 1 March of a leap year reads 1 March.
    feb28 = year.at(dt.datetime(2027, 2, 28, 12, 30, tzinfo=est).timestamp())
    assert year.at(dt.datetime(2028, 2, 29, 12, 30, tzinfo=est).timestamp()) == feb28
    assert year.at(dt.datetime(2028, 3, 1, 12, 30, tzinfo=est).timestamp()) == \
        year.at(dt.datetime(2027, 3, 1, 12, 30, tzinfo=est).timestamp())


def _broken_epw(tmp_path: Path, line: int, edit) -> Path:
    lines = EPW.read_bytes().decode("latin-1").split("\r\n")
    lines[line - 1] = edit(lines[line - 1])
    path = tmp_path / "broken.epw"
    path.write_text("\r\n".join(lines), encoding="latin-1")
    return path


@pytest.mark.parametrize("line,edit,problem", [
    (1, lambda s: "HELLO,world", "line 1: not an EPW file"),
    (1, lambda s: s.replace("36.100", "136.100"), "line 1: latitude 136.1 is outside [-90, 90]"),
    (20, lambda s: ",".join(s.split(",")[:10]), "line 20: has 10 fields; an EPW record has 35"),
    (20, lambda s: ",".join(f if i != 13 else "9999" for i, f in enumerate(s.split(","))),
     "line 20: global horizontal irradiance is missing (EPW's code 9999)"),
    (20, lambda s: ",".join(f if i != 14 else "abc" for i, f in enumerate(s.split(","))),
     "line 20: direct normal irradiance is not a number: 'abc'"),
    (20, lambda s: ",".join(f if i != 6 else "85" for i, f in enumerate(s.split(","))),
     "line 20: dry-bulb temperature 85 is outside [-90, 70]"),
    (20, lambda s: ",".join(f if i != 2 else "31" for i, f in enumerate(s.split(","))),
     "line 740: a second record for 01-31 hour 12"),
    (20, lambda s: ",".join({1: "4", 2: "31"}.get(i, f) for i, f in enumerate(s.split(","))),
     "line 20: 04-31 is not a date"),
])
def test_a_malformed_epw_names_file_line_and_problem(tmp_path: Path, line, edit, problem) -> None:
    path = _broken_epw(tmp_path, line, edit)
    with pytest.raises(DataFileError) as err:
        epw.read(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert problem in message


def test_a_short_or_missing_epw(tmp_path: Path) -> None:
    short = tmp_path / "short.epw"
    short.write_text("\n".join(EPW.read_text(encoding="latin-1").splitlines()[:5000]))
    with pytest.raises(DataFileError, match=r"short.epw: has no record for 07-28 hour 1 and 3767 more hours"):
        epw.read(short)
    with pytest.raises(DataFileError, match=r"nowhere.epw: file not found"):
        epw.read(tmp_path / "nowhere.epw")
    with pytest.raises(DataFileError, match=r"is a directory"):
        epw.read(tmp_path)
    binary = tmp_path / "binary.epw"
    binary.write_bytes(b"LOCATION,x\n" + bytes(range(256)))
    with pytest.raises(DataFileError, match=r"binary.epw: line 1: not an EPW file"):
        epw.read(binary)


def test_pvgis_hourly_csv_is_read_in_utc_and_in_kw(tmp_path: Path) -> None:
    path = pvgis_csv(tmp_path / "pvgis.csv", p_w=lambda h: 1000.0 * (h % 24 == 12))
    series = seriesfile.read(path, MADRID, max_kw=10_000)
    noon = dt.datetime(2020, 3, 1, 12, 10, tzinfo=UTC).timestamp()
    assert series.at(noon) == pytest.approx(1.0)
    assert series.at(noon + 1800) == pytest.approx(0.5)          # linear between samples
    assert series.at(dt.datetime(2026, 3, 1, 12, 10, tzinfo=UTC).timestamp()) == pytest.approx(1.0)
    assert series.at(dt.datetime(2020, 12, 31, 23, 40, tzinfo=UTC).timestamp()) == pytest.approx(0.0)


def test_plain_csv_in_local_time_and_kwh_per_interval(tmp_path: Path) -> None:
    # Local wall-clock stamps without an offset, as meter exports have them: an hour missing in
    # March, an hour twice in October (the second time read as the later one).
    t0 = int(dt.datetime(2026, 1, 1, tzinfo=MADRID).timestamp())
    rows = [dt.datetime.fromtimestamp(t0 + 900 * i, MADRID).strftime("%Y-%m-%dT%H:%M")
            for i in range(35040)]
    kw = tmp_path / "kw.csv"
    kw.write_text("timestamp,kw\n" + "\n".join(f"{r},{(i % 96) / 10}" for i, r in enumerate(rows)) + "\n")
    series = seriesfile.read(kw, MADRID, max_kw=100)
    assert series.at(dt.datetime(2026, 1, 1, 0, 30, tzinfo=MADRID).timestamp()) == pytest.approx(0.2)
    kwh = tmp_path / "kwh.csv"
    kwh.write_text("timestamp,kwh\n" + "\n".join(f"{r},0.25" for r in rows) + "\n")
    series = seriesfile.read(kwh, MADRID, max_kw=100, unit="kwh", unit_key="meter.series_unit")
    assert series.at(dt.datetime(2026, 5, 1, 7, 7, 30, tzinfo=MADRID).timestamp()) == pytest.approx(1.0)
    fall = dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=MADRID).timestamp()
    assert series.at(fall) == pytest.approx(1.0)


@pytest.mark.parametrize("text,problem", [
    ("", "is empty"),
    ("when,kw\n2026-01-01T00:00,1\n", "line 1: the header must be timestamp,kw, got 'when,kw'"),
    ("timestamp,w\n2026-01-01T00:00,1\n",
     "line 1: the header's unit w contradicts the config (a PV series is in kw)"),
    ("timestamp,kw\n2026-01-01T00:00,1\n2026-13-01T00:00,1\n",
     "line 3: timestamp '2026-13-01T00:00' is not ISO 8601"),
    ("timestamp,kw\n2026-01-01T00:00,1\n2026-01-01T01:00,x\n", "line 3: kw is not a number: 'x'"),
    ("timestamp,kw\n2026-01-01T00:00,1\n2026-01-01T01:00,-1\n", "line 3: kw -1 is outside [0, 10000]"),
    ("timestamp,kw\n2026-01-01T00:00,1\n2026-01-01T01:00,20000\n",
     "line 3: kw 20000 is outside [0, 10000]"),
    ("timestamp,kw\n2026-01-01T01:00,1\n2026-01-01T00:00,1\n",
     "line 3: is not later than the line before it"),
    ("timestamp,kw\n2026-01-01T00:00,1,2\n", "line 2: has 3 fields; expected 2"),
    ("timestamp,kw\n2026-01-01T00:00,1\n2026-01-02T00:00,1\n",
     "covers 2.0 days; a series must cover a whole year"),
    ("Latitude (decimal degrees):\t45.0\nno table here\n", "looks like PVGIS output but has no table"),
])
def test_a_malformed_series_names_file_line_and_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "series.csv"
    path.write_text(text)
    with pytest.raises(DataFileError) as err:
        seriesfile.read(path, MADRID, max_kw=10_000)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    assert problem in str(err.value)


def test_a_negative_interval_energy_is_a_sentence_too(tmp_path: Path) -> None:
    """kWh has no upper bound of its own (the power it makes is checked): a one-sided range."""
    path = tmp_path / "meter.csv"
    path.write_text("timestamp,kwh\n2026-01-01T00:00,1\n2026-01-01T01:00,-0.5\n")
    with pytest.raises(DataFileError, match=r"meter.csv: line 3: kwh -0.5 is below 0$"):
        seriesfile.read(path, MADRID, max_kw=10_000, unit="kwh", unit_key="meter.series_unit")


def test_a_pvgis_row_beyond_the_limit_or_malformed(tmp_path: Path) -> None:
    path = pvgis_csv(tmp_path / "p.csv", p_w=lambda h: 5e6 if h == 100 else 0.0)
    with pytest.raises(DataFileError, match=r"p.csv: line 112: P \(W\) 5e\+06 is outside \[0, 1e\+06\]"):
        seriesfile.read(path, MADRID, max_kw=1000)
    text = path.read_text().replace("20200105:0410", "2020-01-05 04:10")
    path.write_text(text)
    with pytest.raises(DataFileError, match=r"line 112: time '2020-01-05 04:10' is not YYYYMMDD:HHMM"):
        seriesfile.read(path, MADRID, max_kw=1e9)


def test_a_series_folds_any_year_onto_its_own() -> None:
    t0 = int(dt.datetime(2021, 1, 1, tzinfo=UTC).timestamp())
    instants = list(range(t0, t0 + 365 * 86400, 3600))
    series = Series(instants, [float(i % 8760) for i in range(len(instants))])
    assert series.at(t0 + 3600 * 100) == 100.0
    later = int(dt.datetime(2030, 1, 5, 4, tzinfo=UTC).timestamp())   # hour 100 of a year
    assert series.at(later) == 100.0
    assert series.at(t0 + 365 * 86400 - 1800) == pytest.approx(8759 / 2)  # end joins start
    leap = int(dt.datetime(2028, 2, 29, 6, tzinfo=UTC).timestamp())
    assert series.at(leap) == series.at(int(dt.datetime(2021, 2, 28, 6, tzinfo=UTC).timestamp()))
