"""A real RabbitMQ resource alarm, on a node of the test's own (it would block every publisher
of the machine's broker): both daemons report the blocked connection on /healthz and in
pvsim_broker_blocked, nothing is lost meanwhile, and everything flows again when it lifts."""

from __future__ import annotations

import json

import pika
import pytest

from tests.support.csvfiles import drain_and_check_every_second_once
from tests.support.daemons import http_get
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def blocked(daemon) -> bool:
    try:
        status, body = http_get(daemon.port, "/healthz")
    except OSError:  # not listening yet
        return False
    return status == 503 and "blocks" in json.loads(body)["detail"]


def test_a_memory_alarm_blocks_both_daemons_visibly_and_loses_nothing(
        private_config, private_rabbitmq, daemons):
    pv = daemons.start("pv", private_config)
    meter = daemons.start("meter", private_config)
    wait_for(lambda: pv.metric("pvsim_pv_readings_written_total") >= 3, message="first rows")
    # a malformed message waits in the queue (pvsim-pv stopped): dead-lettering it is a publish
    assert pv.stop() == 0
    channel = pika.BlockingConnection(pika.URLParameters(private_config.url)).channel()
    channel.basic_publish(private_config.exchange, private_config.queue, b"not json")

    assert private_rabbitmq.ctl("set_vm_memory_high_watermark", "0.000001").returncode == 0
    try:
        wait_for(lambda: blocked(meter), timeout=30, message="the meter reports the alarm")
        assert meter.metric("pvsim_broker_blocked") == 1
        pv = daemons.start("pv", private_config, wait=False)
        wait_for(lambda: blocked(pv), timeout=30, message="pvsim-pv reports the alarm")
        assert pv.metric("pvsim_broker_blocked") == 1
        assert pv.metric("pvsim_pv_messages_rejected_total") == 0  # waiting to dead-letter
    finally:
        assert private_rabbitmq.ctl("set_vm_memory_high_watermark", "0.4").returncode == 0

    for d in (meter, pv):
        wait_for(lambda: http_get(d.port, "/healthz")[0] == 200, timeout=30,
                 message="healthy when the alarm lifts")
    wait_for(lambda: pv.metric("pvsim_pv_messages_rejected_total") == 1, timeout=30,
             message="the malformed message dead-lettered once the alarm lifted")
    assert meter.metric("pvsim_broker_blocked") == 0 and pv.metric("pvsim_broker_blocked") == 0
    drain_and_check_every_second_once(pv, meter, private_config, ["smart-meter-0"])
