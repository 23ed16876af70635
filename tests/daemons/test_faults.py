"""The exactly-once claim under faults, end to end, against the real RabbitMQ.

Both daemons run as subprocesses; the test SIGKILLs pvsim-pv and restarts it, restarts RabbitMQ
itself (rabbitmqctl stop, rabbitmq-server -detached), SIGKILLs pvsim-meter and restarts it, and
SIGTERMs pvsim-pv. Afterwards every second from each meter's first reading to its last confirmed
one is in the CSV exactly once. RabbitMQ is started again even if the test fails.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time

import pytest

from conftest import broker_reachable, ensure_rabbitmq, http_get, wait_for
from pvsim.pipeline.csvsink import day_files

pytestmark = pytest.mark.slow


@pytest.fixture
def restore_rabbitmq():
    yield
    assert ensure_rabbitmq(), "RabbitMQ could not be started again after the test"


def csv_instants(directory) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for _, path in day_files(directory):
        for line in path.read_text().splitlines()[1:]:
            ts, meter = line.split(",")[:2]
            out.setdefault(meter, []).append(int(dt.datetime.fromisoformat(ts).timestamp()))
    return out


def restart_rabbitmq() -> None:
    subprocess.run(["rabbitmqctl", "stop"], capture_output=True, timeout=60)
    wait_for(lambda: not broker_reachable(0.5), timeout=30, message="RabbitMQ down")
    time.sleep(1.0)  # the daemons notice and retry against a dead port
    subprocess.run(["rabbitmq-server", "-detached"], capture_output=True, timeout=30)
    subprocess.run(["rabbitmqctl", "await_startup", "--timeout", "60"], capture_output=True,
                   timeout=70)


def test_every_second_exactly_once_through_crashes_and_a_broker_restart(
        pvsim_config, daemons, restore_rabbitmq):
    """Each step waits until the CSV holds a second later than its fault, so the span checked at
    the end covers every fault, however long this machine took for each."""
    meters = ["smart-meter-0", "smart-meter-1"]
    pvsim_config.write(meter={"id": meters})
    out = pvsim_config.output
    pv = daemons.start("pv", pvsim_config)
    meter = daemons.start("meter", pvsim_config)

    def rows_after(instant: float, message: str) -> None:
        """Wait until every meter has a row for a second later than `instant`."""
        wait_for(lambda: all(max(csv_instants(out).get(m, [0])) > instant for m in meters),
                 timeout=60, interval=0.2, message=message)

    rows_after(time.time(), "first rows")

    # 1. pvsim-pv is killed outright, and restarted
    killed_pv = time.time()
    pv.stop(signal.SIGKILL)
    time.sleep(1.5)
    pv = daemons.start("pv", pvsim_config)
    rows_after(time.time(), "rows after the pv restart")

    # 2. RabbitMQ restarts: both daemons reconnect by themselves
    restart_rabbitmq()
    broker_back = time.time()
    wait_for(lambda: http_get(pvsim_config.meter_port, "/healthz")[0] == 200, timeout=60,
             interval=0.5, message="meter reconnected")
    wait_for(lambda: http_get(pvsim_config.pv_port, "/healthz")[0] == 200, timeout=60,
             interval=0.5, message="pv reconnected")
    assert meter.metric("pvsim_broker_reconnects_total") >= 1
    assert pv.metric("pvsim_broker_reconnects_total") >= 1
    rows_after(broker_back, "rows after the broker restart")

    # 3. pvsim-meter is killed outright, and restarted: it produces the seconds it missed
    meter.stop(signal.SIGKILL)
    time.sleep(1.5)
    meter = daemons.start("meter", pvsim_config)
    rows_after(time.time(), "rows after the meter restart")
    assert "resuming: producing the" in meter.log()

    # 4. pvsim-pv is stopped cleanly, and restarted
    assert pv.stop(signal.SIGTERM) == 0
    time.sleep(1.0)
    pv = daemons.start("pv", pvsim_config)
    restarted_pv = time.time()
    rows_after(restarted_pv, "rows after the clean pv restart")

    # the end: the meter stops cleanly (recording what was confirmed), pv drains the queue
    assert meter.stop(signal.SIGTERM) == 0
    last = json.loads(pvsim_config.state_file.read_text())["last_confirmed"]
    wait_for(lambda: all(max(csv_instants(out).get(m, [0])) >= last[m] for m in meters),
             timeout=20, message="every confirmed reading written")
    assert pv.stop(signal.SIGTERM) == 0

    rows = csv_instants(out)
    assert sorted(rows) == meters
    for m in meters:
        got = rows[m]
        assert len(got) == len(set(got)), f"{m}: duplicate rows"
        expected = list(range(min(got), last[m] + 1))
        missing = sorted(set(expected) - set(got))
        assert not missing, f"{m}: {len(missing)} seconds missing, first {missing[:5]}"
        assert sorted(got) == expected
        # the span checked holds every fault: from before the first kill to after the last restart
        assert min(got) < killed_pv and max(got) > restarted_pv
