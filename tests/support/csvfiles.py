"""What pvsim's daily CSV files hold, read back by tests: the instants of their rows, and the
exactly-once check (every confirmed second in the CSV once) after two daemons ran."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.support.daemons import DaemonProcess
from tests.support.pvsimconfig import PvsimConfig
from tests.support.waiting import wait_for


def csv_instants(directory: Path) -> dict[str, list[int]]:
    """Per meter, the instant of every complete row in a directory's daily CSVs."""
    from pvsim.pipeline.csvformat import all_day_files, parse_line
    out: dict[str, list[int]] = {}
    for _, _, path in all_day_files(directory):
        text = path.read_text()
        for line in text[: text.rfind("\n") + 1].splitlines()[1:]:
            parsed = parse_line(line)
            assert parsed is not None, f"{path}: not a row: {line!r}"
            out.setdefault(parsed[1].meter_id, []).append(parsed[1].instant)
    return out


def drain_and_check_every_second_once(pv: DaemonProcess, meter: DaemonProcess,
                                      config: PvsimConfig, meters: list[str],
                                      first: int | None = None) -> dict[str, list[int]]:
    """Stop the meter cleanly (it records what RabbitMQ confirmed), let pvsim-pv write all of it,
    stop pvsim-pv, and check that every second of every meter, from `first` (default: the
    meter's first row) to its last confirmed reading, is in the CSV exactly once."""
    assert meter.stop(signal.SIGTERM) == 0
    last = json.loads(config.state_file.read_text())["last_confirmed"]
    wait_for(lambda: all(max(csv_instants(config.output_dir).get(m, [0])) >= last[m] for m in meters),
             timeout=60, message="every confirmed reading written")
    assert pv.stop(signal.SIGTERM) == 0
    rows = csv_instants(config.output_dir)
    assert sorted(rows) == sorted(meters)
    for m in meters:
        got = rows[m]
        assert len(got) == len(set(got)), f"{m}: duplicate rows"
        expected = set(range(min(got) if first is None else first, last[m] + 1))
        missing = sorted(expected - set(got))
        assert not missing, f"{m}: {len(missing)} seconds missing, first {missing[:5]}"
        assert set(got) == expected, f"{m}: rows outside the expected seconds"
    return rows
