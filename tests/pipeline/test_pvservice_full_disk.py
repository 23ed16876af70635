"""A full file system at the PV service: a reading counts as written only once its row is
appended, so the same readings sent again after space was freed are all written, exactly once.

On a real tmpfs of a few KiB (root only), not a patched method: the fault is ENOSPC from the
kernel when the sink's write buffer overflows in the middle of a large batch.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from pvsim.model.pvcurve import PvCurve
from pvsim.model.reading import Reading
from pvsim.pipeline.csvformat import day_files, parse_line
from pvsim.pipeline.csvsink import CsvSink, SinkError
from pvsim.pipeline.pvservice import PvService

MADRID = ZoneInfo("Europe/Madrid")
START = int(dt.datetime(2026, 6, 21, 10, 0, tzinfo=MADRID).timestamp())


def batch(n: int) -> list[Reading]:
    return [Reading("smart-meter-0", START + i, 1000.0 + i % 50, MADRID)
            for i in range(n)]


def instants_in(directory) -> list[int]:
    out = []
    for _, path in day_files(directory):
        for line in path.read_text().splitlines()[1:]:
            out.append(parse_line(line)[1].instant)
    return out


def test_a_full_disk_leaves_unwritten_readings_unmarked_and_a_retry_writes_them(tiny_fs):
    sink = CsvSink(tiny_fs.path / "out")
    service = PvService(PvCurve(MADRID), sink, MADRID)
    tiny_fs.fill(leave=20_000)  # room for about 280 rows of the 2,000
    readings = batch(2000)
    with pytest.raises(SinkError, match="No space left on device"):
        service.process(readings)
        service.sync()
    written_before = service.rows_total
    assert written_before < len(readings)

    tiny_fs.free()  # the administrator makes room; the same message is delivered again
    outcome = service.process(readings)
    service.sync()
    assert outcome.duplicates == written_before       # what was appended before is not doubled
    assert outcome.written == len(readings) - written_before  # and nothing is lost
    got = instants_in(sink.directory)
    assert sorted(got) == [r.instant for r in readings]
