"""The factory: config to PV model, and what the programs do with a bad data file (exit 78,
one line naming file and line, before anything else happens)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pvsim import config
from pvsim.inputs.datafile import DataFileError
from pvsim.inputs.models import pv_model
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
    args = ["--accelerated", "--broker", "none", "--output", str(tmp_path / "o")] \
        if program.endswith("run") else []
    done = subprocess.run([sys.executable, "-m", program, "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 78, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in done.stderr
    assert f"{broken}: line 100: direct normal irradiance -5 is outside [0, 2000]" in err[0]
