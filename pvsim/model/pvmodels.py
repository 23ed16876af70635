"""The PV plant's output at any instant, by any of pvsim's models: pure computation, no I/O.

Every model answers `power_kw(instant)`: kW AC at epoch second `instant`. The instant is all any
of them needs: the sun's position, the weather's hour and a series' sample are functions of it,
and the chart, which is read by the wall clock, knows the plant's zone. Config chooses one
(`pv.model`) through pvsim.inputs.models:

- `chart`    the challenge's reference curve (pvsim.model.pvcurve), the same every day;
- `clearsky` the sun over a site through an array (solar, irradiance, pvarray), by season;
- `weather`  a typical year's measured irradiance (pvsim.model.weather) through the same array;
- `series`   a recorded PV output series (pvsim.model.series), as it is.

`clearsky` and `weather` compute the plant exactly on a grid of instants (every 5 minutes,
aligned to the epoch) and interpolate linearly in between: the sun and the hourly weather change
smoothly, so the error is below 0.2 % of the peak (at its kinks: sunrise, sunset and the
inverter's clipping; checked at three sites on five days a year, every 7 s, by
tests/model/test_pvmodels.py), and a year at one-second steps costs 105,120
evaluations of the chain instead of 31.5 million. Cloud noise (`pv.noise`) multiplies any model.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

from pvsim.model import irradiance, noise
from pvsim.model.pvarray import Array
from pvsim.model.series import Series
from pvsim.model.solar import SunPosition
from pvsim.model.weather import WeatherYear

GRID_SECONDS = 300
_CACHE_LIMIT = 200_000  # grid points kept (two years' worth): a daemon's memory stays bounded
_UTC = dt.timezone.utc


class PvModel(Protocol):
    """What the pipeline asks of a PV plant.

    Attributes
    ----------
    peak_kw : float
        The plant's largest output [kW] (AC): the scale of charts and checks.
    """

    peak_kw: float

    def power_kw(self, instant: int) -> float:
        """The plant's output at an instant.

        Parameters
        ----------
        instant : int
            Epoch seconds [s].

        Returns
        -------
        power_kw : float
            Power [kW] (AC), >= 0.
        """


class _Gridded(ABC):
    """Exact values on a grid of instants, linear in between; subclasses give `exact`."""

    grid = GRID_SECONDS

    def __init__(self) -> None:
        self._cache: dict[int, float] = {}

    @abstractmethod
    def exact(self, instant: int) -> float:
        """`PvModel.power_kw` exactly: power [kW] (AC) at epoch second `instant` [s], computed
        through the model's whole chain."""

    def _point(self, k: int) -> float:
        value = self._cache.get(k)
        if value is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            value = self._cache[k] = self.exact(k * self.grid)
        return value

    def power_kw(self, instant: int) -> float:
        """Power [kW] (AC) at epoch second `instant` [s]: linear between grid points."""
        k, r = divmod(instant, self.grid)
        a = self._point(k)
        if r == 0:
            return a
        return a + (self._point(k + 1) - a) * r / self.grid


class ClearSkyPv(_Gridded):
    """An array at a site under a clear sky: sun position, Ineichen-Perez, PVWatts.

    Parameters
    ----------
    array : Array
        The array (orientation, nameplate [kWp], losses, inverter [kW]).
    sun : SunPosition
        The sun over the site.
    altitude_m : float
        Site altitude [m].
    linke_turbidity : sequence of float
        Linke turbidity [unitless]: one value, or one per month.
    temperature_c : float, default 20.0
        Air temperature [C].
    wind_m_s : float, default 1.0
        Wind speed [m/s].

    Raises
    ------
    ValueError
        For a Linke turbidity of neither 1 nor 12 values.
    """

    def __init__(self, array: Array, sun: SunPosition, altitude_m: float,
                 linke_turbidity: Sequence[float], temperature_c: float = 20.0,
                 wind_m_s: float = 1.0) -> None:
        super().__init__()
        if len(linke_turbidity) not in (1, 12):
            raise ValueError("Linke turbidity: one value, or one per month")
        self.array, self.sun, self.altitude_m = array, sun, altitude_m
        self.linke = tuple(linke_turbidity) * (12 // len(linke_turbidity))
        self.temperature_c, self.wind_m_s = temperature_c, wind_m_s
        self.peak_kw = array.peak_kw
        self._pressure_ratio = sun.pressure_hpa * 100.0 / 101325.0
        self._days: dict[int, tuple[float, float]] = {}

    def _day(self, instant: int) -> tuple[float, float]:
        """(extraterrestrial irradiance, Linke turbidity) of the UTC day."""
        day = instant // 86400
        found = self._days.get(day)
        if found is None:
            date = dt.datetime.fromtimestamp(day * 86400, _UTC)
            if len(self._days) > 800:
                self._days.clear()
            found = self._days[day] = (irradiance.extraterrestrial(date.timetuple().tm_yday),
                                       self.linke[date.month - 1])
        return found

    def exact(self, instant: int) -> float:
        """Power [kW] (AC) at epoch second `instant` [s], through the whole chain."""
        sun = self.sun.at(instant)
        airmass = irradiance.relative_airmass(sun.apparent_zenith)
        if airmass is None:
            return 0.0
        dni_extra, tl = self._day(instant)
        sky = irradiance.ineichen(sun.apparent_zenith, airmass * self._pressure_ratio, tl,
                                  self.altitude_m, dni_extra)
        return self.array.ac_kw(sun, sky, self.temperature_c, self.wind_m_s)


class WeatherPv(_Gridded):
    """An array under a typical year's weather: irradiance and temperature from the file.

    Parameters
    ----------
    array, sun
        As ClearSkyPv's.
    weather : WeatherYear
        Irradiance [W/m^2], temperature [C] and wind [m/s] by the hour.
    """

    def __init__(self, array: Array, sun: SunPosition, weather: WeatherYear) -> None:
        super().__init__()
        self.array, self.sun, self.weather = array, sun, weather
        self.peak_kw = array.peak_kw

    def exact(self, instant: int) -> float:
        """Power [kW] (AC) at epoch second `instant` [s], through the whole chain."""
        hour = self.weather.at(instant)
        if hour.ghi <= 0.0:
            return 0.0
        sun = self.sun.at(instant)
        # Round sunrise and sunset the sky is bright while the sun is just below the horizon:
        # the diffuse light counts, a beam from below the horizon cannot.
        dni = hour.dni if sun.apparent_zenith < 90.0 else 0.0
        sky = irradiance.Horizontal(hour.ghi, dni, hour.dhi)
        return self.array.ac_kw(sun, sky, hour.temperature_c, hour.wind_m_s)


class SeriesPv:
    """A recorded PV output series used as it is (linear between samples).

    Parameters
    ----------
    series : Series
        PV power [kW] by instant.
    """

    def __init__(self, series: Series) -> None:
        self.series = series
        self.peak_kw = series.peak

    def power_kw(self, instant: int) -> float:
        """Power [kW] at epoch second `instant` [s]; a negative sample counts as 0."""
        return max(0.0, self.series.at(instant))


class Clouds:
    """Passing clouds over any model: its power times 1 - depth * cover(seed, instant).

    Parameters
    ----------
    model : PvModel
        The clear model.
    depth : float
        The most the clouds take [unitless], within [0, 1] (`pv.noise`).
    seed : int
        The clouds' seed (`pv.seed`).

    Raises
    ------
    ValueError
        For a depth outside [0, 1].
    """

    def __init__(self, model: PvModel, depth: float, seed: int) -> None:
        if not 0.0 <= depth <= 1.0:
            raise ValueError("noise depth must be within [0, 1]")
        self.model, self.depth, self.seed = model, depth, seed
        self.peak_kw = model.peak_kw

    def power_kw(self, instant: int) -> float:
        """The model's power [kW] at epoch second `instant` [s], less the clouds' share."""
        kw = self.model.power_kw(instant)
        if kw:
            kw *= 1.0 - self.depth * noise.cloud_cover(self.seed, instant)
        return kw
