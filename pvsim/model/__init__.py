"""Pure computation: clocks, deterministic noise, the PV curve, the meter model, readings, energy
and price plans.

No file or network I/O and no threads: every result is a function of its arguments (time, seed,
config data), which is what lets the daemons, the accelerated run and the API share it, and what
makes a reading produced late the very same reading. May import `pvsim.config` and nothing else
of pvsim.
"""
