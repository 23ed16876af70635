"""The factories: config to PV and meter models, and what the programs do with a bad data file
(exit 78, one line naming file and line, before anything else happens)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from pvsim import config
from pvsim.inputs.datafile import DataFileError
from pvsim.inputs.models import meter_models, pv_model
from pvsim.model.metermodel import Building, Profiled, Recorded, Uniform
from pvsim.model.pvcurve import PvCurve
from pvsim.model.pvmodels import ClearSkyPv, Clouds, SeriesPv, WeatherPv
from tests.inputs.test_readers import EPW, pvgis_csv

ROOT = Path(__file__).resolve().parent.parent.parent


def _cfg(text: str) -> config.Config:
    return config.parse(text, "test.yaml")


def test_each_model_from_config(tmp_path: Path) -> None:
    assert isinstance(pv_model(_cfg("")), PvCurve)
    sky = pv_model(_cfg("pv: {model: clearsky, latitude: 40.4, longitude: -3.7, peak_kw: 4}"))
    assert isinstance(sky, ClearSkyPv) and sky.peak_kw == 4
    weather = pv_model(_cfg(f"pv: {{model: weather, weather_file: '{EPW}'}}"))
    assert isinstance(weather, WeatherPv) and weather.sun.latitude == 36.1
    moved = pv_model(_cfg(f"pv: {{model: weather, weather_file: '{EPW}', latitude: 35}}"))
    assert moved.sun.latitude == 35
    series = pv_model(_cfg(f"pv: {{model: series, series_file: '{pvgis_csv(tmp_path / 'p.csv')}'}}"))
    assert isinstance(series, SeriesPv)
    cloudy = pv_model(_cfg("pv: {model: clearsky, latitude: 40, longitude: 0, noise: 0.3}"))
    assert isinstance(cloudy, Clouds) and isinstance(cloudy.model, ClearSkyPv)


@pytest.mark.parametrize("text,key,problem", [
    ("pv: {model: clearsky}", "pv.latitude", "required by pv.model clearsky"),
    ("pv: {model: clearsky, latitude: 40}", "pv.longitude", "required by pv.model clearsky"),
    ("pv: {model: weather}", "pv.weather_file", "required by pv.model weather"),
    ("pv: {model: series}", "pv.series_file", "required by pv.model series"),
    ("pv: {linke_turbidity: [3, 3]}", "pv.linke_turbidity", "one value or twelve"),
    ("pv: {linke_turbidity: [0.5]}", "pv.linke_turbidity[0]", "must be at least 1"),
    ("pv: {latitude: 91}", "pv.latitude", "must be at most 90"),
    ("pv: {inverter_kw: 0}", "pv.inverter_kw", "must be greater than 0"),
    ("meter: {model: series}", "meter.series_file", "required by meter.model series"),
    ("meter: {profile: h0}", "meter.profile", "must be one of 'H0', 'G0'"),
    ("meter: {annual_kwh: 0}", "meter.annual_kwh", "must be greater than 0"),
    ("meter: {holidays: 2026-12-25}", "meter.holidays", "expected a list, got"),
    ("meter: {holidays: [2026-12-25, '2026-12-25']}", "meter.holidays", "appears twice"),
    ("meter: {holidays: [2026-02-30]}", "meter.holidays[0]", "expected a date YYYY-MM-DD"),
    ("meter: {holidays: [2026-12-25 10:00]}", "meter.holidays[0]", "expected a date YYYY-MM-DD"),
    ("meter: {series_unit: W}", "meter.series_unit", "must be one of 'w', 'kw', 'kwh'"),
])
def test_what_each_model_needs_is_checked_with_the_config(text, key, problem) -> None:
    with pytest.raises(config.ConfigError) as err:
        _cfg(text)
    assert str(err.value).startswith(f"test.yaml: {key}: ") and problem in str(err.value)


def test_a_missing_file_is_a_data_file_error(tmp_path: Path) -> None:
    cfg = _cfg(f"pv: {{model: weather, weather_file: '{tmp_path}/none.epw'}}")
    with pytest.raises(DataFileError, match="none.epw: file not found"):
        pv_model(cfg)
    assert DataFileError("f", 1, "x").exit_code == 78


@pytest.mark.parametrize("program", ["pvsim.cli.run", "pvsim.daemons.pv"])
def test_the_programs_exit_78_with_one_line_naming_file_and_line(tmp_path: Path, program: str) -> None:
    broken = tmp_path / "broken.epw"
    lines = EPW.read_bytes().decode("latin-1").split("\r\n")
    fields = lines[99].split(",")
    fields[14] = "-5"
    lines[99] = ",".join(fields)
    broken.write_text("\r\n".join(lines), encoding="latin-1")
    cfg = tmp_path / "pvsim.yaml"
    cfg.write_text(f"pv: {{model: weather, weather_file: '{broken}', listen: '127.0.0.1:1'}}\n"
                   f"output: {{directory: '{tmp_path}/out'}}\n"
                   "broker: {url: 'amqp://guest:guest@127.0.0.1:1/%2F', connect_attempts: 1}\n")
    err = exits_78_with_one_line(program, cfg, tmp_path)
    assert f"{broken}: line 100: direct normal irradiance -5 is outside [0, 2000]" in err


def exits_78_with_one_line(program: str, cfg: Path, tmp_path: Path) -> str:
    """Start `program` (pvsim-run in process, or a daemon) on `cfg`; its one line on stderr."""
    args = ["--accelerated", "--broker", "none", "--output", str(tmp_path / "o")] \
        if program.endswith("run") else []
    done = subprocess.run([sys.executable, "-m", program, "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 78, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in done.stderr
    return err[0]


def meter_csv(path: Path, unit: str, value: str, year: int = 2025, step: int = 900) -> Path:
    """A year of a building's meter export in local time (Europe/Madrid), one value per row."""
    t0 = int(dt.datetime(year, 1, 1).replace(tzinfo=config.Config().tz).timestamp())
    rows = [dt.datetime.fromtimestamp(t0 + i, config.Config().tz).strftime("%Y-%m-%d %H:%M")
            for i in range(0, 365 * 86400, step)]
    path.write_text(f"timestamp,{unit}\n" + "".join(f"{r},{value}\n" for r in rows))
    return path


def test_each_meter_model_from_config(tmp_path: Path) -> None:
    assert isinstance(meter_models(_cfg(""))[0].load, Building)
    assert isinstance(meter_models(_cfg("meter: {model: uniform}"))[0].load, Uniform)
    slp = meter_models(_cfg("meter: {id: [a, b], model: slp, profile: G4, annual_kwh: 20000, "
                            "holidays: [2026-12-25, '2026-01-06']}"))
    assert [m.meter_id for m in slp] == ["a", "b"] and slp[0].load is slp[1].load
    profile = slp[0].load.profile
    assert isinstance(slp[0].load, Profiled) and profile.profile == "G4"
    assert profile.annual_kwh == 20000 and profile.holidays == {dt.date(2026, 12, 25),
                                                                dt.date(2026, 1, 6)}
    path = meter_csv(tmp_path / "m.csv", "kwh", "0.5")
    series = meter_models(_cfg(f"meter: {{model: series, series_file: '{path}', "
                               "series_unit: kwh}"))[0]
    assert isinstance(series.load, Recorded)
    noon = int(dt.datetime(2026, 7, 1, 12, 0).replace(tzinfo=config.Config().tz).timestamp())
    assert series.power_w(noon, dt.datetime.fromtimestamp(noon)) == pytest.approx(2000.0)


def test_a_meter_series_header_must_agree_with_its_unit(tmp_path: Path) -> None:
    path = meter_csv(tmp_path / "m.csv", "kwh", "0.5")
    with pytest.raises(DataFileError, match=r"m.csv: line 1: the header's unit kwh contradicts "
                                            r"the config \(meter.series_unit is kw\)"):
        meter_models(_cfg(f"meter: {{model: series, series_file: '{path}'}}"))
    named = meter_csv(tmp_path / "named.csv", "consumption", "1500", step=3600)
    model = meter_models(_cfg(f"meter: {{model: series, series_file: '{named}', series_unit: w}}"))[0]
    assert model.power_w(1_780_000_000, dt.datetime.fromtimestamp(1_780_000_000)) == 1500.0
    with pytest.raises(DataFileError, match=r"p.csv: line \d+: is PVGIS PV output; a meter series"):
        meter_models(_cfg(f"meter: {{model: series, series_file: '{pvgis_csv(tmp_path / 'p.csv')}'}}"))


def test_a_meter_series_above_the_meter_is_clipped_and_said(tmp_path: Path, caplog) -> None:
    path = meter_csv(tmp_path / "big.csv", "kw", "12.5", step=3600)
    model = meter_models(_cfg(f"meter: {{model: series, series_file: '{path}'}}"))[0]
    assert model.power_w(1_780_000_000, dt.datetime.fromtimestamp(1_780_000_000)) == 9000.0
    assert "reaches 12500 W, above meter.max_w (9000 W)" in caplog.text
    roomy = meter_models(_cfg(f"meter: {{model: series, series_file: '{path}', max_w: 20000}}"))[0]
    assert roomy.power_w(1_780_000_000, dt.datetime.fromtimestamp(1_780_000_000)) == 12500.0


@pytest.mark.parametrize("program", ["pvsim.cli.run", "pvsim.daemons.meter"])
def test_a_bad_meter_series_stops_the_meter_programs_with_78(tmp_path: Path, program: str) -> None:
    broken = meter_csv(tmp_path / "meter.csv", "kwh", "0.25", step=3600)
    text = broken.read_text().splitlines()
    text[4000] = text[4000].replace(",0.25", ",lots")
    broken.write_text("\n".join(text) + "\n")
    cfg = tmp_path / "pvsim.yaml"
    cfg.write_text(f"meter: {{model: series, series_file: '{broken}', series_unit: kwh, "
                   f"listen: '127.0.0.1:1', state_file: '{tmp_path}/state'}}\n"
                   "broker: {url: 'amqp://guest:guest@127.0.0.1:1/%2F', connect_attempts: 1}\n")
    err = exits_78_with_one_line(program, cfg, tmp_path)
    assert f"{broken}: line 4001: kwh is not a number: 'lots'" in err
