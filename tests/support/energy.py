"""Expected energy figures for the tests: the product's integrator over a list of samples."""

from __future__ import annotations

from pvsim.model.energy import EnergyBalance, EnergyIntegrator


def integrate(samples: list[tuple[int, float, float]],
              max_gap_seconds: float = 3600.0) -> EnergyBalance:
    """The EnergyBalance of (instant, meter kW, PV kW) samples sorted by instant, as
    energy.EnergyIntegrator makes it of them fed at once."""
    acc = EnergyIntegrator(max_gap_seconds)
    acc.add_many(samples)
    return acc.balance
