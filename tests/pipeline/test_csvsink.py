import datetime as dt
import os
from zoneinfo import ZoneInfo

import pytest

from pvsim.model.pvcurve import PvCurve
from pvsim.pipeline.csvformat import HEADER, Row, day_files, format_line, parse_line, parse_sample
from pvsim.pipeline.csvsink import CsvSink, SinkError
from pvsim.model.reading import Reading
from pvsim.pipeline.pvservice import PvService

TZ = ZoneInfo("Europe/Madrid")


def readings(start: dt.datetime, seconds: int, meter: str = "m", step: int = 1):
    t0 = int(start.timestamp())
    for t in range(t0, t0 + seconds, step):
        yield Reading(meter, t, 1000.0, TZ)


def service(tmp_path, **kw) -> PvService:
    return PvService(PvCurve(TZ), CsvSink(tmp_path, **kw), TZ)


def lines(path):
    return path.read_text().splitlines()


def test_header_and_row_format(tmp_path):
    svc = service(tmp_path)
    start = dt.datetime(2026, 6, 21, 14, 10, tzinfo=TZ)
    svc.process(readings(start, 1))
    svc.sync()
    assert lines(tmp_path / "pvsim-2026-06-21.csv") == [
        HEADER, "2026-06-21T14:10:00+02:00,m,1000.0,1.0000,3.2500,-2.2500"]


def test_rotation_at_local_midnight(tmp_path):
    svc = service(tmp_path)
    svc.process(readings(dt.datetime(2026, 6, 21, 23, 59, 58, tzinfo=TZ), 4))
    svc.sync()
    a, b = lines(tmp_path / "pvsim-2026-06-21.csv"), lines(tmp_path / "pvsim-2026-06-22.csv")
    assert [x[:25] for x in a[1:]] == ["2026-06-21T23:59:58+02:00", "2026-06-21T23:59:59+02:00"]
    assert [x[:25] for x in b[1:]] == ["2026-06-22T00:00:00+02:00", "2026-06-22T00:00:01+02:00"]
    assert a[0] == b[0] == HEADER


def test_utc_readings_land_in_the_local_day(tmp_path):
    svc = service(tmp_path)
    utc = dt.datetime(2026, 6, 21, 22, 30, tzinfo=dt.timezone.utc)  # 00:30 on the 22nd in Madrid
    svc.process([Reading("m", int(utc.timestamp()), 5.0, utc.tzinfo)])
    svc.sync()
    assert lines(tmp_path / "pvsim-2026-06-22.csv")[1].startswith("2026-06-22T00:30:00+02:00")


@pytest.mark.parametrize("date,rows", [("2026-03-29", 23 * 3600), ("2026-10-25", 25 * 3600)])
def test_dst_days_have_23_or_25_hours_and_no_instant_twice(tmp_path, date, rows):
    svc = service(tmp_path)
    start = dt.datetime.combine(dt.date.fromisoformat(date), dt.time(), TZ)
    svc.process(readings(start, 26 * 3600))
    svc.sync()
    data = lines(tmp_path / f"pvsim-{date}.csv")[1:]
    assert len(data) == rows
    instants = [parse_line(x)[1].instant for x in data]
    assert instants == list(range(instants[0], instants[0] + rows))
    offsets = {x[19:25] for x in data}
    assert offsets == {"+01:00", "+02:00"}


def test_duplicates_are_dropped_and_recovered_after_restart(tmp_path):
    start = dt.datetime(2026, 6, 21, 12, tzinfo=TZ)
    first = service(tmp_path)
    assert first.process(readings(start, 10)).written == 10
    first.sync()
    first.sink.close()
    again = PvService.recovering(PvCurve(TZ), CsvSink(tmp_path), TZ)
    out = again.process(readings(start, 15))
    again.sync()
    assert (out.written, out.duplicates) == (5, 10)
    assert len(lines(tmp_path / "pvsim-2026-06-21.csv")) == 1 + 15


def test_torn_last_line_is_cut_and_its_reading_rewritten(tmp_path):
    start = dt.datetime(2026, 6, 21, 12, tzinfo=TZ)
    svc = service(tmp_path)
    svc.process(readings(start, 3))
    svc.sync()
    svc.sink.close()
    path = tmp_path / "pvsim-2026-06-21.csv"
    with open(path, "a") as f:
        f.write("2026-06-21T12:00:03+02:00,m,10")  # crash in the middle of a write
    again = PvService.recovering(PvCurve(TZ), CsvSink(tmp_path), TZ)
    assert again.process(readings(start, 5)).written == 2
    again.sync()
    data = lines(path)
    assert len(data) == 6 and all(parse_line(x) for x in data[1:])


def test_a_megabyte_of_nuls_after_the_last_row_costs_no_complete_row(tmp_path, caplog):
    """A power loss can leave the tail of a file as NUL bytes: a day of 1,440 rows with 1 MiB of
    NULs appended keeps every row when pvsim-pv reads the day back, and the cut is logged."""
    start = dt.datetime(2026, 6, 21, 0, tzinfo=TZ)
    svc = service(tmp_path)
    assert svc.process(readings(start, 86400, step=60)).written == 1440
    svc.sync()
    svc.sink.close()
    path = tmp_path / "pvsim-2026-06-21.csv"
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\0" * (1 << 20))
    again = PvService.recovering(PvCurve(TZ), CsvSink(tmp_path), TZ)
    out = again.process(readings(start, 86400, step=60))  # the day again: all there already
    assert (out.written, out.duplicates) == (0, 1440)
    late = again.process(readings(start + dt.timedelta(seconds=86370), 1))  # and one new row
    again.sync()
    assert late.written == 1
    data = lines(path)
    assert len(data) == 1 + 1441 and all(parse_line(x) for x in data[1:])
    assert path.stat().st_size > size and b"\0" not in path.read_bytes()
    assert any(f"{1 << 20} bytes from offset {size}" in r.getMessage() for r in caplog.records)


def test_a_file_without_any_newline_is_reset_to_its_header(tmp_path):
    path = tmp_path / "pvsim-2026-06-21.csv"
    path.write_bytes(b"\0" * 10_000)
    svc = PvService.recovering(PvCurve(TZ), CsvSink(tmp_path), TZ)
    svc.process(readings(dt.datetime(2026, 6, 21, 12, tzinfo=TZ), 2))
    svc.sync()
    assert lines(path)[0] == HEADER and len(lines(path)) == 3


def test_rows_going_back_day_by_day_each_land_in_their_file(tmp_path):
    """More days than the sink keeps open, newest first (a POST of history in reverse): each
    file opened for an older day must not be the one closed to make room."""
    start = dt.datetime(2026, 6, 21, 12, tzinfo=TZ)
    svc = service(tmp_path)
    back = [next(readings(start - dt.timedelta(days=d), 1)) for d in range(10)]
    assert svc.process(back).written == 10
    svc.sync()
    assert len(day_files(tmp_path)) == 10
    assert all(len(lines(p)) == 2 for _, p in day_files(tmp_path))


def test_run_mode_truncates_a_previous_file_once(tmp_path):
    path = tmp_path / "pvsim-2026-06-21.csv"
    path.write_text(HEADER + "\nold,row\n")
    svc = service(tmp_path, truncate=True)
    svc.process(readings(dt.datetime(2026, 6, 21, 12, tzinfo=TZ), 2))
    svc.sink.reopen()
    svc.process(readings(dt.datetime(2026, 6, 21, 13, tzinfo=TZ), 2))
    svc.sync()
    assert len(lines(path)) == 5 and "old" not in path.read_text()


def test_rows_are_on_disk_after_sync(tmp_path):
    svc = service(tmp_path)
    svc.process(readings(dt.datetime(2026, 6, 21, 12, tzinfo=TZ), 3))
    svc.sync()
    # read through a separate descriptor while the sink still holds its file open
    assert len(lines(tmp_path / "pvsim-2026-06-21.csv")) == 4


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match="cannot create output directory .*file/out"):
        CsvSink(blocker / "out")
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(SinkError, match="not writable"):
            CsvSink(ro)


def test_day_files_lists_only_pvsim_days(tmp_path):
    for name in ("pvsim-2026-06-02.csv", "pvsim-2026-06-01.csv", "other.csv", "pvsim-x.csv"):
        (tmp_path / name).write_text(HEADER + "\n")
    assert [d.isoformat() for d, _ in day_files(tmp_path)] == ["2026-06-01", "2026-06-02"]


def test_negative_zero_is_not_written(tmp_path):
    midnight = dt.datetime(2026, 6, 21, tzinfo=TZ).isoformat()
    assert b",-0.0000" not in format_line(midnight, "m", 0.0, 0.0, 0.0, -0.0)


def test_a_line_parses_back_into_its_local_time_and_row():
    local = dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=TZ)  # the second 02:30, at +01:00
    row = Row(local.date(), "m-1", int(local.timestamp()), 1234.5, 1.2345, 0.5)
    line = format_line(local.isoformat(), row.meter_id, row.meter_w, row.meter_kw, row.pv_kw, row.net_kw)
    assert line == b"2026-10-25T02:30:00+01:00,m-1,1234.5,1.2345,0.5000,0.7345\n"
    back_local, back = parse_line(line.decode())
    assert back == row and back.net_kw == 0.7345 and back_local.utcoffset() == dt.timedelta(hours=1)
    sample = ("m-1", row.instant, 1.2345, 0.5)
    assert parse_sample(line.decode()) == sample == parse_sample(line.decode(), "m-1")
    for parse in (parse_line, parse_sample):
        assert parse(line.decode(), "other") is None  # another meter's row is passed over
        assert parse(HEADER) is None and parse("2026-10-25T02:30:00,m,1,2,3") is None
        assert parse("not a time,m,1,2,3,4") is None and parse("2026-10-25T02:30:00,m,1,x,3,4") is None


def test_a_restarted_service_skips_rows_of_any_day_already_written(tmp_path):
    old = dt.datetime(2026, 5, 1, 12, tzinfo=TZ)
    first = service(tmp_path)
    first.process(readings(old, 5))
    first.process(readings(old + dt.timedelta(days=30), 5))
    first.sync()
    first.sink.close()
    again = PvService.recovering(PvCurve(TZ), CsvSink(tmp_path), TZ)
    out = again.process(readings(old, 7))  # a month-old day, not among the newest files
    again.sync()
    assert (out.written, out.duplicates) == (2, 5)
    assert len(lines(tmp_path / "pvsim-2026-05-01.csv")) == 1 + 7
