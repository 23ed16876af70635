"""The configured PV and meter models, built once at start: the one place that asks which runs.

Every program (pvsim-meter, pvsim-pv, pvsim-run, the benchmarks) calls `pv_model(cfg)` and
`meter_models(cfg)`; the pipeline then only calls `power_kw` and `power_w`. Files are read here,
so a malformed one stops the program at start with a DataFileError (exit 78) naming the file and
the line, never later in the middle of a run.
"""

from __future__ import annotations

import logging

from pvsim import config as configmod
from pvsim.inputs import bdew, epw, seriesfile
from pvsim.model.loadprofile import StandardLoadProfile
from pvsim.model.metermodel import Building, Load, MeterModel, Profiled, Recorded, Uniform
from pvsim.model.pvarray import Array
from pvsim.model.pvcurve import PvCurve
from pvsim.model.pvmodels import ClearSkyPv, Clouds, PvModel, SeriesPv, WeatherPv
from pvsim.model.solar import SunPosition

log = logging.getLogger(__name__)

WEATHER_REFRACTION_C = 12.0  # the air temperature solar refraction assumes (as pvlib's default)


def array(pv: configmod.PvConfig) -> Array:
    return Array(pv.tilt_deg, pv.azimuth_deg, pv.peak_kw, pv.losses, pv.inverter_kw, pv.albedo)


def pv_model(cfg: configmod.Config) -> PvModel:
    """The model `pv.model` names, with `pv.noise` clouds over it."""
    pv = cfg.pv
    model: PvModel
    if pv.model == "chart":
        model = PvCurve(cfg.tz, peak_kw=pv.peak_kw)
    elif pv.model == "clearsky":
        altitude = pv.altitude_m or 0.0
        sun = SunPosition(pv.latitude, pv.longitude, altitude, pv.temperature_c)  # type: ignore[arg-type]
        model = ClearSkyPv(array(pv), sun, altitude, pv.linke_turbidity, pv.temperature_c)
    elif pv.model == "weather":
        where, year = epw.read(pv.weather_file)
        latitude = where.latitude if pv.latitude is None else pv.latitude
        longitude = where.longitude if pv.longitude is None else pv.longitude
        altitude = where.elevation_m if pv.altitude_m is None else pv.altitude_m
        log.info("weather %s: %s (%.3f, %.3f, %g m, UTC%+g)", pv.weather_file, where.name,
                 latitude, longitude, altitude, where.utc_offset_hours)
        sun = SunPosition(latitude, longitude, altitude, WEATHER_REFRACTION_C)
        model = WeatherPv(array(pv), sun, year)
    else:
        series = seriesfile.read(pv.series_file, cfg.tz, cfg.limits.max_power_w / 1000.0, "kw")
        model = SeriesPv(series)
    return Clouds(model, pv.noise, pv.seed) if pv.noise else model


def load(cfg: configmod.Config) -> Load:
    """The load `meter.model` names; one serves every meter (each has its own noise)."""
    meter = cfg.meter
    if meter.model == "building":
        return Building()
    if meter.model == "uniform":
        return Uniform(meter.max_w)
    if meter.model == "slp":
        return Profiled(StandardLoadProfile(bdew.table(), meter.profile, meter.annual_kwh,
                                            meter.holidays))
    series = seriesfile.read(meter.series_file, cfg.tz, cfg.limits.max_power_w / 1000.0,
                             meter.series_unit, "meter.series_unit")
    if series.peak * 1000.0 > meter.max_w:
        log.warning("meter series %s reaches %.0f W, above meter.max_w (%g W): those readings "
                    "are clipped (raise meter.max_w for a larger building)",
                    meter.series_file, series.peak * 1000.0, meter.max_w)
    return Recorded(series)


def meter_models(cfg: configmod.Config) -> list[MeterModel]:
    """One model per configured meter id."""
    shared = load(cfg)
    return [MeterModel(meter_id, cfg.meter.seed, shared, cfg.meter.max_w)
            for meter_id in cfg.meter.id]
