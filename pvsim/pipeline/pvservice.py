"""The PV service: readings in, CSV rows out, each reading written exactly once.

Shared by every mode: pvsim-pv (readings from RabbitMQ), pvsim-run (from RabbitMQ or in process)
and the JOI API's POST /readings/store. For each reading it computes the PV power at the
reading's local time (in the plant's time zone), the net power, and appends the row to the sink,
unless that meter's instant was already written (a redelivery after a crash or a reconnect).

The memory of what was written (`written`) is kept per local day, and only for the days in use:
the files hold the rest. At each sync (with `recover`: the daemon, which syncs before every ack
and at the end of every POST) or else after each batch (pvsim-run, whose days come in order), the
days beyond `days_in_memory` least recently written are dropped, and a day's first reading after
that reads its file back, as a restart does. Not after each batch in the daemon: a POST's chunks
may all touch the same 366 days, and would each read them back. So memory is bounded by a few
days' rows, whatever a client sends, and is returned when the days go cold; and a day whose files
retention removed is forgotten (`forget`), so a reading of it posted again is written again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from pvsim.model.localtime import HOURS, MINUTES_SECONDS, LocalTime
from pvsim.model.pvmodels import PvModel
from pvsim.model.reading import Reading
from pvsim.pipeline.csvformat import Row, format_line
from pvsim.pipeline.csvsink import CsvSink
from pvsim.model.shard import label, shard_of
from pvsim.pipeline.messages import MAX_POWER_W, InvalidMessage, decode_values
from pvsim.pipeline.rangeset import RangeSet

log = logging.getLogger(__name__)

# A row as written, and the length of its line in bytes (what the store counts of a day's file).
RowListener = Callable[[Row, int], None]
BatchListener = Callable[[list[Row]], None]
# Local days whose exactly-once memory is kept between batches: today and yesterday for the live
# meters, and a few days a client is posting to.
DAYS_IN_MEMORY = 8


@dataclass
class Outcome:
    """What `process` did with a batch of readings."""

    written: int = 0
    duplicates: int = 0


class PvService:
    """The rows of one shard's meters (`sink.shard`, of `shards`; without shards, of all)."""

    def __init__(self, pv_model: PvModel, sink: CsvSink, tz: ZoneInfo, *, recover: bool = False,
                 max_power_w: float = MAX_POWER_W, shards: int = 1,
                 days_in_memory: int = DAYS_IN_MEMORY) -> None:
        self.pv_model, self.sink, self.tz = pv_model, sink, tz
        self.shards = shards
        self._mine: set[str] = set()  # meters checked to belong to sink.shard
        self.local_time = LocalTime(tz)
        self.max_power_w = max_power_w  # limits.max_power_w: what a message's reading may have
        # Per local day (the least recently written first), per meter: the instants written.
        self.written: dict[dt.date, dict[str, RangeSet]] = {}
        # With `recover`, the first reading of each local day loads what that day's CSV already
        # holds: a restart then skips rows written before it, whichever day they belong to.
        self.recover = recover
        self.days_in_memory = days_in_memory
        # Days dropped from memory to bound it: read back when written again (without `recover`,
        # the others are never read: pvsim-run starts each day's file afresh).
        self._evicted: set[dt.date] = set()
        # Listeners hear of each row as it is written (the daemon's metrics and store); batch
        # listeners of the rows of each message (or `process` call) at once, after them, without
        # a call per row and listener (pvsim-run's summary).
        self.listeners: list[RowListener] = []
        self.batch_listeners: list[BatchListener] = []
        self.rows_total = 0

    @classmethod
    def recovering(cls, pv_model: PvModel, sink: CsvSink, tz: ZoneInfo,
                   max_power_w: float = MAX_POWER_W, shards: int = 1,
                   days_in_memory: int = DAYS_IN_MEMORY) -> "PvService":
        """A service that skips what the CSV files already hold (the daemon; POSTed readings)."""
        return cls(pv_model, sink, tz, recover=True, max_power_w=max_power_w, shards=shards,
                   days_in_memory=days_in_memory)

    def _day(self, day: dt.date) -> dict[str, RangeSet]:
        """A day's memory, now the most recently used: read back from its file when it is not
        in memory and the file may hold rows written before (a restart, or an eviction)."""
        seen = self.written.pop(day, None)
        if seen is None:
            seen = {}
            if self.recover or day in self._evicted:
                for meter_id, instant in self.sink.written(day):  # SinkError: nothing kept
                    ranges = seen.get(meter_id)
                    if ranges is None:
                        ranges = seen[meter_id] = RangeSet()
                    ranges.add(instant)
                self._evicted.discard(day)
        self.written[day] = seen
        return seen

    def forget(self, day: dt.date) -> None:
        """Retention removed a day's files: close its file and drop its memory, so that a reading
        of that day sent again is written again (to a new file) rather than dropped."""
        self.sink.forget(day)
        self.written.pop(day, None)
        self._evicted.discard(day)

    def _trim(self) -> None:
        """Drop the least recently written days beyond `days_in_memory`; every row is synced to
        its file first (which the next reading of the day reads back). The files stay as the
        sink has them: a pvsim-run sink that started a day's file afresh must not again."""
        self.sink.sync()  # the files then hold every row the memory did
        self._drop()

    def _drop(self) -> None:
        while len(self.written) > self.days_in_memory:
            day = next(iter(self.written))
            del self.written[day]
            self._evicted.add(day)

    def process(self, readings: Iterable[Reading]) -> Outcome:
        """Append the rows of readings not written before; call `sync` before acknowledging.

        A reading counts as written only once its row is appended: when the sink fails
        (SinkError), that reading and the rest are not marked, so a retry writes them."""
        return self.write_values([(r.meter_id, r.instant, r.power_w)
                                  for r in readings])

    def handle(self, body: bytes, redelivered: bool = False) -> Outcome:
        """Process one message body; raises messages.InvalidMessage for the dead-letter queue.
        (`redelivered` matters to pvsim-pv's crash record only, not to a run's private queue.)"""
        return self.write_values(decode_values(body, self.max_power_w))

    def write_values(self, values: list[tuple[str, int, float]]) -> Outcome:
        """`process` for decoded (meter id, instant, W) values. A shard's service refuses,
        before writing any, values of another shard's meter: that sender's fleet.shards
        differs, and its rows would land in files another process may be writing."""
        if self.sink.shard is not None:
            for meter_id in {v[0] for v in values} - self._mine:
                home = shard_of(meter_id, self.shards)
                if home != self.sink.shard:
                    raise InvalidMessage("wrong_shard", (
                        f"meter {meter_id} belongs to shard {label(home)} of {self.shards}, not "
                        f"to {label(self.sink.shard)}: is fleet.shards the same everywhere?"))
                self._mine.add(meter_id)
        if self.recover:
            self._check_days(values)
        return self._write(values)

    def _check_days(self, values: list[tuple[str, int, float]]) -> None:
        """Refuse the whole batch, before its first row, when the file of a local day it touches
        is not a regular file (csvsink.NotRegularFile: a storage fault of that day only). For
        the daemon and the API (`recover`), where a batch is acknowledged or answered: a run
        fails as a whole on it (exit 73) and saves the pass (2-4 % of its time)."""
        start = end = 0
        days: dict[dt.date, None] = {}
        for _, instant, _ in values:
            if not start <= instant < end:
                span = self.local_time.span(instant)
                start, end = span.start, span.end
                days[span.day] = None
        for day in days:
            self.sink.check(day)

    def _write(self, readings: Iterable[tuple[str, int, float]]) -> Outcome:
        """`process` for (meter id, instant, W) values: the loop every reading of every mode
        goes through, kept tight (a year at 1-second steps is 31.5 million turns of it).

        A row is its reading's local time in the plant's zone (date and ISO text for the CSV:
        from the LocalTime span, not from zoneinfo each time), the PV power at its instant,
        and the net power."""
        outcome = Outcome()
        append_line, listeners = self.sink.append_line, self.listeners
        batch: list[Row] = []
        keep = batch.append if self.batch_listeners else None
        tell = bool(listeners) or keep is not None
        power_kw, local_time = self.pv_model.power_kw, self.local_time
        start = end = 0  # the span's instants [start, end): empty, the first reading finds its own
        on_day: dict[str, RangeSet] = {}
        try:
            for meter_id, instant, power_w in readings:
                if not start <= instant < end:
                    span = local_time.span(instant)
                    start, end, base, day = span.start, span.end, span.base, span.day
                    prefix, suffix = span.prefix, span.suffix
                    on_day = self._day(day)
                seen = on_day.get(meter_id)
                if seen is None:
                    seen = on_day[meter_id] = RangeSet()
                if instant in seen:
                    outcome.duplicates += 1
                    log.debug("duplicate reading %s@%d dropped", meter_id, instant)
                    continue
                seconds = instant - base
                meter_kw = round(power_w / 1000.0, 4)
                pv_kw = round(power_kw(instant), 4)
                net_kw = round(meter_kw - pv_kw, 4)
                # SinkError: this reading and the rest stay unmarked
                hours, rest = divmod(seconds, 3600)
                text = prefix + HOURS[hours] + MINUTES_SECONDS[rest] + suffix
                line = format_line(text, meter_id, power_w, meter_kw, pv_kw, net_kw)
                append_line(day, line)
                seen.add(instant)
                outcome.written += 1
                if tell:
                    row = Row(day, meter_id, instant, power_w, meter_kw, pv_kw)
                    for listener in listeners:
                        listener(row, len(line))
                    if keep is not None:
                        keep(row)
        finally:
            self.rows_total += outcome.written
            if batch:  # the rows written, also when the sink failed part way
                for batch_listener in self.batch_listeners:
                    batch_listener(batch)
        if not self.recover and len(self.written) > self.days_in_memory:
            self._trim()
        return outcome

    def sync(self) -> None:
        """Make every row appended so far durable; then keep the memory of `days_in_memory` days."""
        self.sink.sync()
        self._drop()
