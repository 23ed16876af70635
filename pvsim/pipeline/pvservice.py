"""The PV service: readings in, CSV rows out, each reading written exactly once.

Shared by every mode: pvsim-pv (readings from RabbitMQ), pvsim-run (from RabbitMQ or in process)
and the JOI API's POST /readings/store. For each reading it computes the PV power at the
reading's local time (in the plant's time zone), the net power, and appends the row to the sink,
unless that meter's instant was already written (a redelivery after a crash or a reconnect).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from pvsim.model.pvcurve import local_seconds
from pvsim.model.pvmodels import PvModel
from pvsim.model.reading import Reading
from pvsim.pipeline.csvsink import CsvSink, Row
from pvsim.pipeline.messages import MAX_POWER_W, decode
from pvsim.pipeline.rangeset import RangeSet

log = logging.getLogger(__name__)

RowListener = Callable[[Row, int], None]


@dataclass
class Outcome:
    """What `process` did with a batch of readings."""

    written: int = 0
    duplicates: int = 0


class PvService:
    def __init__(self, curve: PvModel, sink: CsvSink, tz: ZoneInfo, *, recover: bool = False,
                 max_power_w: float = MAX_POWER_W) -> None:
        self.curve, self.sink, self.tz = curve, sink, tz
        self.max_power_w = max_power_w  # limits.max_power_w: what a message's reading may have
        self.written: dict[str, RangeSet] = {}
        # With `recover`, the first reading of each local day loads what that day's CSV already
        # holds: a restart then skips rows written before it, whichever day they belong to.
        self.recover = recover
        self._days_loaded: set[dt.date] = set()
        self.listeners: list[RowListener] = []
        self.rows_total = 0
        self.duplicates_total = 0

    @classmethod
    def recovering(cls, curve: PvModel, sink: CsvSink, tz: ZoneInfo,
                   max_power_w: float = MAX_POWER_W) -> "PvService":
        """A service that skips what the CSV files already hold (the daemon; POSTed readings)."""
        return cls(curve, sink, tz, recover=True, max_power_w=max_power_w)

    def _load_day(self, day: dt.date) -> None:
        self._days_loaded.add(day)
        for meter_id, instant in self.sink.written(day):
            seen = self.written.get(meter_id)
            if seen is None:
                seen = self.written[meter_id] = RangeSet()
            seen.add(instant)

    def row_for(self, reading: Reading) -> tuple[Row, int]:
        """The CSV row of a reading, and its instant. Pure: no dedup, no I/O."""
        local = reading.timestamp.astimezone(self.tz)
        instant = int(local.timestamp())
        meter_kw = round(reading.power_w / 1000.0, 4)
        pv_kw = round(self.curve.power_kw(local_seconds(local), instant), 4)
        return Row(local, reading.meter_id, reading.power_w, meter_kw, pv_kw,
                   round(meter_kw - pv_kw, 4)), instant

    def process(self, readings: Iterable[Reading]) -> Outcome:
        """Append the rows of readings not written before; call `sync` before acknowledging.

        A reading counts as written only once its row is appended: when the sink fails
        (SinkError), that reading and the rest are not marked, so a retry writes them."""
        outcome = Outcome()
        written, append, listeners, row_for = self.written, self.sink.append, self.listeners, self.row_for
        try:
            for reading in readings:
                row, instant = row_for(reading)
                if self.recover and row.timestamp.date() not in self._days_loaded:
                    self._load_day(row.timestamp.date())
                seen = written.get(reading.meter_id)
                if seen is None:
                    seen = written[reading.meter_id] = RangeSet()
                if instant in seen:
                    outcome.duplicates += 1
                    log.debug("duplicate reading %s@%d dropped", reading.meter_id, instant)
                    continue
                append(row)  # SinkError: this reading and the rest stay unmarked
                seen.add(instant)
                outcome.written += 1
                for listener in listeners:
                    listener(row, instant)
        finally:
            self.rows_total += outcome.written
            self.duplicates_total += outcome.duplicates
        return outcome

    def handle(self, body: bytes) -> Outcome:
        """Process one message body; raises messages.InvalidMessage for the dead-letter queue."""
        return self.process(decode(body, self.max_power_w))

    def sync(self) -> None:
        """Make every row appended so far durable."""
        self.sink.sync()
