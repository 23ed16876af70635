"""A meter reading: the value every part of pvsim passes along, from the meter model to the CSV.

Its identity is (meter_id, instant): the instant in epoch seconds grows per meter and, unlike a
counter, survives restarts of either daemon, so a reading produced again after a restart is
recognised as the same reading. The instant is the one time a reading has; `tz` only says in
which zone its local time is told (the meter's own; a received message's offset), so it takes
no part in equality. `pvsim.pipeline.messages` is its wire format (whose `seq` and `ts` fields
both carry this instant).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Reading:
    """One meter's power at one instant.

    Parameters
    ----------
    meter_id : str
        The meter's id (`config.METER_ID`).
    instant : int
        Epoch seconds [s] (UTC) of the reading: its identity within its meter.
    power_w : float
        Power the building drew from the meter [W].
    tz : datetime.tzinfo, default UTC
        The zone its local time (`timestamp`) is told in; not part of its identity.
    """

    meter_id: str
    instant: int
    power_w: float
    tz: dt.tzinfo = field(default=dt.timezone.utc, compare=False)

    @property
    def timestamp(self) -> dt.datetime:
        """The instant as an aware local datetime in `tz`, on a whole second."""
        return dt.datetime.fromtimestamp(self.instant, self.tz)
