"""A PV array from sunlight to AC power: pure computation, no I/O.

The chain is PVWatts' (Dobos 2014, NREL/TP-6A20-62641), as pvlib implements it:

1. irradiance on the plane of the array (pvsim.model.irradiance: isotropic sky, the physical
   incidence-angle modifier on the beam);
2. cell temperature by the Sandia model (King et al. 2004), open rack, glass/polymer modules:
   hotter in sunshine and still air, which derates the DC power;
3. DC power: nameplate (kWp at 1000 W/m2 and 25 C) times irradiance, with the temperature
   coefficient of a standard module (-0.37 %/C), less the system losses (wiring, soiling,
   mismatch, availability: PVWatts' 14 % by default);
4. AC power: the PVWatts inverter, its efficiency curve peaking near 96 %, clipped at its AC
   rating (`inverter_kw`; without one, an inverter sized to the array's nameplate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pvsim.model import irradiance
from pvsim.model.irradiance import Horizontal
from pvsim.model.solar import Sun

GAMMA_PDC = -0.0037              # per degree C: PVWatts' standard module
ETA_INV_NOM = 0.96               # PVWatts inverter: nominal efficiency
ETA_INV_REF = 0.9637             # and its reference efficiency
SAPM_A, SAPM_B, SAPM_DT = -3.56, -0.075, 3.0   # open rack, glass/polymer


@dataclass(frozen=True)
class Array:
    """A fixed array: its orientation, nameplate and losses.

    Parameters
    ----------
    tilt_deg : float
        Tilt from the horizontal [degrees]: 0 flat, 90 vertical.
    azimuth_deg : float
        The way it faces, clockwise from north [degrees]: 180 south.
    peak_kw : float
        DC nameplate at 1000 W/m^2 and 25 C [kWp].
    losses : float, default 0.14
        System losses as a share of DC power [unitless].
    inverter_kw : float or None, default None
        The inverter's AC rating [kW]; None: the array's nameplate.
    albedo : float, default 0.2
        Ground reflectance [unitless]: 0.2 grass, 0.8 fresh snow.
    """

    tilt_deg: float
    azimuth_deg: float
    peak_kw: float
    losses: float = 0.14
    inverter_kw: float | None = None
    albedo: float = 0.2

    def ac_kw(self, sun: Sun, sky: Horizontal, temperature_c: float, wind_m_s: float) -> float:
        """AC output with the sun at `sun` and `sky` on the horizontal.

        Parameters
        ----------
        sun : Sun
            The sun's apparent zenith and azimuth [degrees].
        sky : Horizontal
            Irradiance on the horizontal [W/m^2].
        temperature_c : float
            Air temperature [C].
        wind_m_s : float
            Wind speed [m/s].

        Returns
        -------
        ac_kw : float
            AC power [kW].
        """
        if sun.apparent_zenith >= 90.0 and sky.ghi <= 0.0:
            return 0.0
        cos_aoi = irradiance.cos_incidence(self.tilt_deg, self.azimuth_deg,
                                           sun.apparent_zenith, sun.azimuth)
        poa = irradiance.isotropic(self.tilt_deg, cos_aoi, sky, self.albedo)
        effective = poa.direct * irradiance.iam_physical(cos_aoi) + poa.diffuse
        if effective <= 0.0:
            return 0.0
        total = poa.total
        cell = (total * math.exp(SAPM_A + SAPM_B * wind_m_s) + temperature_c
                + total / 1000.0 * SAPM_DT)
        dc_kw = (effective / 1000.0 * self.peak_kw * (1.0 + GAMMA_PDC * (cell - 25.0))
                 * (1.0 - self.losses))
        return pvwatts_inverter(dc_kw, self.inverter_dc_kw())

    def inverter_dc_kw(self) -> float:
        """The inverter's DC rating [kW]: its AC rating over the nominal efficiency."""
        return self.inverter_kw / ETA_INV_NOM if self.inverter_kw else self.peak_kw


def pvwatts_inverter(dc_kw: float, pdc0_kw: float) -> float:
    """AC power from DC power through an inverter (PVWatts): the efficiency falls at low load,
    and the output is clipped at the AC rating.

    Parameters
    ----------
    dc_kw : float
        DC input power [kW].
    pdc0_kw : float
        The inverter's DC rating [kW].

    Returns
    -------
    ac_kw : float
        AC output power [kW].
    """
    if dc_kw <= 0.0:
        return 0.0
    zeta = dc_kw / pdc0_kw
    eta = ETA_INV_NOM / ETA_INV_REF * (-0.0162 * zeta - 0.0059 / zeta + 0.9858)
    return max(0.0, min(ETA_INV_NOM * pdc0_kw, eta * dc_kw))
