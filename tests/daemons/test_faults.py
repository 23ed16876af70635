"""The exactly-once claim under faults, end to end, against a real RabbitMQ of the test's own.

Both daemons run as subprocesses against a private RabbitMQ node (`private_rabbitmq`: its own
name, ports and data under the test's tmp dir), so that stopping the broker disturbs nothing
else. The test SIGKILLs pvsim-pv and restarts it, restarts RabbitMQ itself (rabbitmqctl stop,
then the server again on the same data), SIGKILLs pvsim-meter and restarts it, and SIGTERMs
pvsim-pv. Afterwards every second from each meter's first reading to its last confirmed one is
in the CSV exactly once.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.csvfiles import csv_instants, drain_and_check_every_second_once
from tests.support.daemons import http_get
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def test_every_second_exactly_once_through_crashes_and_a_broker_restart(
        private_config, private_rabbitmq, daemons):
    """Each step waits until the CSV holds a second later than its fault, so the span checked at
    the end covers every fault, however long this machine took for each."""
    meters = ["smart-meter-0", "smart-meter-1"]
    private_config.write(meter={"id": meters})
    out = private_config.output
    pv = daemons.start("pv", private_config)
    meter = daemons.start("meter", private_config)

    def rows_after(instant: float, message: str) -> None:
        """Wait until every meter has a row for a second later than `instant`."""
        wait_for(lambda: all(max(csv_instants(out).get(m, [0])) > instant for m in meters),
                 timeout=60, interval=0.2, message=message)

    rows_after(time.time(), "first rows")

    # 1. pvsim-pv is killed outright, and restarted
    killed_pv = time.time()
    pv.stop(signal.SIGKILL)
    time.sleep(1.5)
    pv = daemons.start("pv", private_config)
    rows_after(time.time(), "rows after the pv restart")

    # 2. RabbitMQ restarts: both daemons reconnect by themselves
    private_rabbitmq.stop()
    time.sleep(1.0)  # the daemons notice and retry against a dead port
    private_rabbitmq.start()
    broker_back = time.time()
    wait_for(lambda: http_get(private_config.meter_port, "/healthz")[0] == 200, timeout=60,
             interval=0.5, message="meter reconnected")
    wait_for(lambda: http_get(private_config.pv_port, "/healthz")[0] == 200, timeout=60,
             interval=0.5, message="pv reconnected")
    assert meter.metric("pvsim_broker_reconnects_total") >= 1
    assert pv.metric("pvsim_broker_reconnects_total") >= 1
    rows_after(broker_back, "rows after the broker restart")

    # 3. pvsim-meter is killed outright, and restarted: it produces the seconds it missed
    meter.stop(signal.SIGKILL)
    time.sleep(1.5)
    meter = daemons.start("meter", private_config)
    rows_after(time.time(), "rows after the meter restart")
    assert "resuming: producing the" in meter.log()

    # 4. pvsim-pv is stopped cleanly, and restarted
    assert pv.stop(signal.SIGTERM) == 0
    time.sleep(1.0)
    pv = daemons.start("pv", private_config)
    restarted_pv = time.time()
    rows_after(restarted_pv, "rows after the clean pv restart")

    # the end: the meter stops cleanly, pv drains the queue, every second is there once
    rows = drain_and_check_every_second_once(pv, meter, private_config, meters)
    for got in rows.values():
        # the span checked holds every fault: from before the first kill to after the last restart
        assert min(got) < killed_pv and max(got) > restarted_pv
