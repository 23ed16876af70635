"""Where the sun is: pure computation, no I/O.

The algorithm is NOAA's (the General Solar Position Calculations of NOAA's Global Monitoring
Laboratory, after Meeus, "Astronomical Algorithms"): the sun's declination and the equation of
time from a few series in Julian centuries, then hour angle, zenith and azimuth. NOAA states it
accurate to about a minute of arc (0.0167 degrees) between 72 degrees north and south; against the
NREL SPA paper's worked example (Reda & Andreas 2003, tests/model/test_solar.py) it is within
0.005 degrees. That is ample for PV power: an error of 0.01 degree in zenith moves the power of a
plane facing the sun by less than 0.02 %.

Refraction is SPA's (Reda & Andreas, eq. 42), with the pressure and temperature of the site, so
that the apparent zenith is the one the clear-sky and transposition models expect.

The declination and the equation of time change by less than half a degree (and a few seconds)
a day; `SunPosition` keeps them for the current hour and recomputes the hour angle for each
instant, which makes a year at one-second steps affordable in pure Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_RAD = math.pi / 180.0
_DEG = 180.0 / math.pi
_UNIX_JD = 2440587.5        # Julian date of 1970-01-01T00:00Z
_J2000 = 2451545.0


@dataclass(frozen=True)
class Sun:
    """The sun seen from a site at an instant.

    Attributes
    ----------
    apparent_zenith : float
        Zenith angle with refraction [degrees]: 0 overhead, 90 on the horizon.
    azimuth : float
        Clockwise from north [degrees]: 90 east, 180 south.
    zenith : float
        Geometric zenith angle, without refraction [degrees].
    """

    apparent_zenith: float
    azimuth: float
    zenith: float


def ephemeris(instant: float) -> tuple[float, float]:
    """The sun's declination and the equation of time (NOAA, after Meeus).

    Parameters
    ----------
    instant : float
        Epoch seconds [s] (UTC).

    Returns
    -------
    declination : float
        Solar declination [degrees].
    equation_of_time : float
        Equation of time [minutes].
    """
    jc = (instant / 86400.0 + _UNIX_JD - _J2000) / 36525.0
    mean_long = (280.46646 + jc * (36000.76983 + jc * 0.0003032)) % 360.0
    mean_anom = 357.52911 + jc * (35999.05029 - 0.0001537 * jc)
    ecc = 0.016708634 - jc * (0.000042037 + 0.0000001267 * jc)
    m = mean_anom * _RAD
    centre = (math.sin(m) * (1.914602 - jc * (0.004817 + 0.000014 * jc))
              + math.sin(2 * m) * (0.019993 - 0.000101 * jc) + math.sin(3 * m) * 0.000289)
    omega = (125.04 - 1934.136 * jc) * _RAD
    apparent_long = (mean_long + centre - 0.00569 - 0.00478 * math.sin(omega)) * _RAD
    obliquity = (23.0 + (26.0 + (21.448 - jc * (46.815 + jc * (0.00059 - jc * 0.001813))) / 60.0)
                 / 60.0 + 0.00256 * math.cos(omega)) * _RAD
    declination = math.asin(math.sin(obliquity) * math.sin(apparent_long))
    y = math.tan(obliquity / 2.0) ** 2
    l0 = mean_long * _RAD
    eot = 4.0 * _DEG * (y * math.sin(2 * l0) - 2 * ecc * math.sin(m)
                        + 4 * ecc * y * math.sin(m) * math.cos(2 * l0)
                        - 0.5 * y * y * math.sin(4 * l0) - 1.25 * ecc * ecc * math.sin(2 * m))
    return declination * _DEG, eot


def refraction(elevation: float, pressure_hpa: float, temperature_c: float) -> float:
    """Atmospheric refraction at a true elevation (SPA eq. 42); none well below the horizon
    (SPA's cut-off: the sun's radius plus the refraction at sunrise).

    Parameters
    ----------
    elevation : float
        True (geometric) solar elevation [degrees].
    pressure_hpa : float
        Site air pressure [hPa].
    temperature_c : float
        Site air temperature [C].

    Returns
    -------
    refraction : float
        Refraction correction [degrees], added to the elevation.
    """
    if elevation < -(0.26667 + 0.5667):
        return 0.0
    return ((pressure_hpa / 1010.0) * (283.0 / (273.0 + temperature_c))
            * 1.02 / (60.0 * math.tan((elevation + 10.3 / (elevation + 5.11)) * _RAD)))


def pressure_at(altitude_m: float) -> float:
    """Standard-atmosphere pressure at an altitude (as pvlib's alt2pres).

    Parameters
    ----------
    altitude_m : float
        Altitude above sea level [m].

    Returns
    -------
    pressure : float
        Air pressure [Pa].
    """
    return 100.0 * ((44331.514 - altitude_m) / 11880.516) ** (1.0 / 0.1902632)


class SunPosition:
    """The sun's position at a site, for any instant; caches the slow terms per hour.

    Parameters
    ----------
    latitude : float
        Site latitude [degrees], north positive, within [-90, 90].
    longitude : float
        Site longitude [degrees], east positive, within [-180, 180].
    altitude_m : float, default 0.0
        Site altitude [m]: its standard pressure sets the refraction.
    temperature_c : float, default 12.0
        Air temperature [C] the refraction assumes.

    Raises
    ------
    ValueError
        For a latitude or longitude out of range.
    """

    def __init__(self, latitude: float, longitude: float, altitude_m: float = 0.0,
                 temperature_c: float = 12.0) -> None:
        if not -90.0 <= latitude <= 90.0 or not -180.0 <= longitude <= 180.0:
            raise ValueError("latitude must be within [-90, 90] and longitude within [-180, 180]")
        self.latitude, self.longitude = latitude, longitude
        self.pressure_hpa = pressure_at(altitude_m) / 100.0
        self.temperature_c = temperature_c
        self._sin_lat, self._cos_lat = math.sin(latitude * _RAD), math.cos(latitude * _RAD)
        self._hour: int | None = None
        self._slow = (0.0, 0.0, 0.0, 0.0)

    def _terms(self, instant: float) -> tuple[float, float, float, float]:
        """sin and cos of the declination, and the equation of time (min) with its hourly rate,
        linear over the hour: its error is far below a second of time."""
        hour = int(instant // 3600)
        if hour != self._hour:
            decl0, eot0 = ephemeris(hour * 3600.0)
            decl1, eot1 = ephemeris(hour * 3600.0 + 3600.0)
            self._hour, self._slow = hour, (decl0, decl1 - decl0, eot0, eot1 - eot0)
        return self._slow

    def at(self, instant: float) -> Sun:
        """The sun at epoch second `instant` [s]: apparent zenith, azimuth and zenith [degrees]."""
        decl0, ddecl, eot0, deot = self._terms(instant)
        frac = (instant % 3600.0) / 3600.0
        decl = (decl0 + ddecl * frac) * _RAD
        eot = eot0 + deot * frac
        true_solar_min = (instant % 86400.0) / 60.0 + eot + 4.0 * self.longitude
        hour_angle = (true_solar_min / 4.0 - 180.0) * _RAD
        sin_d, cos_d, cos_h = math.sin(decl), math.cos(decl), math.cos(hour_angle)
        cos_z = self._sin_lat * sin_d + self._cos_lat * cos_d * cos_h
        zenith = math.acos(max(-1.0, min(1.0, cos_z))) * _DEG
        azimuth = (math.atan2(math.sin(hour_angle),
                              cos_h * self._sin_lat - sin_d / cos_d * self._cos_lat) * _DEG
                   + 180.0) % 360.0
        elevation = 90.0 - zenith
        apparent = zenith - refraction(elevation, self.pressure_hpa, self.temperature_c)
        return Sun(apparent, azimuth, zenith)
