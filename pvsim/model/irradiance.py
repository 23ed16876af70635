"""Sunlight on the ground and on a tilted plane: pure computation, no I/O.

Each function is a published model, written as pvlib writes it (pvlib is the reference
implementation; tests/model/test_pvarray.py holds pvsim against numbers pvlib produced, see
scripts/pvlib-reference):

- extraterrestrial normal irradiance: Spencer (1971), solar constant 1366.1 W/m2;
- relative air mass: Kasten & Young (1989); absolute air mass scaled by the site's pressure;
- clear-sky GHI, DNI and DHI: Ineichen & Perez (2002), with the Linke turbidity of the month;
- irradiance on the plane of the array: beam by the angle of incidence, sky diffuse by the
  isotropic model (Liu & Jordan), ground-reflected by the albedo;
- the incidence-angle modifier of the beam: the physical (Fresnel and absorption) model of
  De Soto et al. (2006) with pvlib's defaults, n = 1.526, K = 4/m, L = 2 mm.
"""

from __future__ import annotations

import math
from typing import NamedTuple

_RAD = math.pi / 180.0
SOLAR_CONSTANT = 1366.1


class Horizontal(NamedTuple):
    """Sunlight on the horizontal.

    Attributes
    ----------
    ghi : float
        Global horizontal irradiance [W/m^2].
    dni : float
        Direct normal irradiance [W/m^2].
    dhi : float
        Diffuse horizontal irradiance [W/m^2].
    """

    ghi: float
    dni: float
    dhi: float


DARK = Horizontal(0.0, 0.0, 0.0)


def extraterrestrial(day_of_year: int) -> float:
    """Normal irradiance above the atmosphere on a day of the year (Spencer 1971).

    Parameters
    ----------
    day_of_year : int
        Day of the year, 1 to 366.

    Returns
    -------
    dni_extra : float
        Extraterrestrial normal irradiance [W/m^2].
    """
    b = 2.0 * math.pi * (day_of_year - 1) / 365.0
    return SOLAR_CONSTANT * (1.00011 + 0.034221 * math.cos(b) + 0.00128 * math.sin(b)
                             + 0.000719 * math.cos(2 * b) + 0.000077 * math.sin(2 * b))


def relative_airmass(apparent_zenith: float) -> float | None:
    """Relative (not pressure-corrected) air mass, Kasten & Young (1989).

    Parameters
    ----------
    apparent_zenith : float
        Refraction-corrected solar zenith angle [degrees].

    Returns
    -------
    airmass_relative : float or None
        Relative air mass [unitless]; None with the sun below the horizon.
    """
    if apparent_zenith > 90.0:
        return None
    return 1.0 / (math.cos(apparent_zenith * _RAD)
                  + 0.50572 * (96.07995 - apparent_zenith) ** -1.6364)


def ineichen(apparent_zenith: float, airmass_absolute: float, linke_turbidity: float,
             altitude_m: float, dni_extra: float) -> Horizontal:
    """Clear-sky irradiance (Ineichen & Perez 2002, without the Perez enhancement).

    Parameters
    ----------
    apparent_zenith : float
        Refraction-corrected solar zenith angle [degrees].
    airmass_absolute : float
        Pressure-corrected air mass [unitless].
    linke_turbidity : float
        Linke turbidity of the month [unitless].
    altitude_m : float
        Site altitude [m].
    dni_extra : float
        Extraterrestrial normal irradiance [W/m^2].

    Returns
    -------
    sky : Horizontal
        Clear-sky GHI, DNI and DHI [W/m^2]; all 0 with the sun below the horizon.
    """
    cos_z = max(math.cos(apparent_zenith * _RAD), 0.0)
    if cos_z <= 0.0:
        return DARK
    tl = linke_turbidity
    fh1 = math.exp(-altitude_m / 8000.0)
    fh2 = math.exp(-altitude_m / 1250.0)
    cg1 = 5.09e-05 * altitude_m + 0.868
    cg2 = 3.92e-05 * altitude_m + 0.0387
    ghi = cg1 * dni_extra * cos_z * max(math.exp(-cg2 * airmass_absolute * (fh1 + fh2 * (tl - 1))), 0.0)
    b = 0.664 + 0.163 / fh1
    bnci = dni_extra * max(b * math.exp(-0.09 * airmass_absolute * (tl - 1)), 0.0)
    bnci_2 = ghi * min(max((1 - (0.1 - 0.2 * math.exp(-tl)) / (0.1 + 0.882 / fh1)) / cos_z, 0.0), 1e20)
    dni = min(bnci, bnci_2)
    return Horizontal(ghi, dni, ghi - dni * cos_z)


def cos_incidence(tilt: float, azimuth: float, apparent_zenith: float, sun_azimuth: float) -> float:
    """Cosine of the angle of incidence: between the sun and the plane's normal.

    Parameters
    ----------
    tilt : float
        Plane tilt from the horizontal [degrees].
    azimuth : float
        Plane azimuth, clockwise from north [degrees].
    apparent_zenith : float
        Refraction-corrected solar zenith angle [degrees].
    sun_azimuth : float
        Solar azimuth, clockwise from north [degrees].

    Returns
    -------
    cos_aoi : float
        Cosine of the angle of incidence [unitless]; negative with the sun behind the plane.
    """
    z, t = apparent_zenith * _RAD, tilt * _RAD
    return (math.cos(t) * math.cos(z)
            + math.sin(t) * math.sin(z) * math.cos((sun_azimuth - azimuth) * _RAD))


class PlaneOfArray(NamedTuple):
    """Irradiance on the plane of the array.

    Attributes
    ----------
    direct : float
        The beam on the plane [W/m^2].
    diffuse : float
        Sky and ground-reflected diffuse on the plane [W/m^2].
    """

    direct: float
    diffuse: float

    @property
    def total(self) -> float:
        """Direct plus diffuse [W/m^2]."""
        return self.direct + self.diffuse


def isotropic(tilt: float, cos_aoi: float, sky: Horizontal, albedo: float) -> PlaneOfArray:
    """Transposition to the plane: beam by incidence, isotropic sky, reflected ground.

    Parameters
    ----------
    tilt : float
        Plane tilt from the horizontal [degrees].
    cos_aoi : float
        Cosine of the angle of incidence [unitless] (`cos_incidence`).
    sky : Horizontal
        Irradiance on the horizontal [W/m^2].
    albedo : float
        Ground reflectance [unitless], 0 to 1.

    Returns
    -------
    poa : PlaneOfArray
        Direct and diffuse irradiance on the plane [W/m^2].
    """
    cos_t = math.cos(tilt * _RAD)
    direct = max(sky.dni * cos_aoi, 0.0)
    diffuse = sky.dhi * (1.0 + cos_t) / 2.0 + sky.ghi * albedo * (1.0 - cos_t) / 2.0
    return PlaneOfArray(direct, diffuse)


def iam_physical(cos_aoi: float, n: float = 1.526, k: float = 4.0, thickness: float = 0.002) -> float:
    """Share of the beam the cover glass lets through at an incidence, relative to normal
    incidence: Fresnel reflection of both polarisations and absorption along the path.

    Parameters
    ----------
    cos_aoi : float
        Cosine of the angle of incidence [unitless].
    n : float, default 1.526
        Refractive index of the cover [unitless].
    k : float, default 4.0
        Glazing extinction coefficient [1/m].
    thickness : float, default 0.002
        Glazing thickness [m].

    Returns
    -------
    iam : float
        Incidence-angle modifier [unitless]: 1 at normal incidence, 0 from behind.
    """
    if cos_aoi <= 0.0:
        return 0.0
    cos1 = cos_aoi
    sin2 = math.sqrt(max(0.0, 1.0 - cos1 * cos1)) / n
    cos2 = math.sqrt(1.0 - sin2 * sin2)
    rho_s = ((cos1 - n * cos2) / (cos1 + n * cos2)) ** 2
    rho_p = ((cos2 - n * cos1) / (cos2 + n * cos1)) ** 2
    tau_0 = (1.0 - ((1.0 - n) / (1.0 + n)) ** 2) * math.exp(-k * thickness)
    absorbed = math.exp(-k * thickness / cos2)
    return ((1.0 - rho_s) + (1.0 - rho_p)) / 2.0 * absorbed / tau_0
