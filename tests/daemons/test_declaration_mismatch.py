"""A queue that exists on RabbitMQ with other arguments than the config asks for (declared by
hand, by an older install, or before broker.* or fleet.* changed) is an operator's error: each
daemon stops promptly with one clear line naming the queue and the difference, and exit 78 (as
on a config error; the units do not restart it), instead of retrying the declaration for ever."""

from __future__ import annotations

import time

import pika
import pytest

from tests.support.waiting import wait_for


@pytest.mark.parametrize("name", ["pv", "meter"])
def test_a_queue_with_other_arguments_stops_the_daemon_with_exit_78(pvsim_config, daemons,
                                                                    name):
    connection = pika.BlockingConnection(pika.URLParameters(pvsim_config.url))
    try:  # the daemons' queue, but bounded: RabbitMQ refuses pvsim's declaration of it
        connection.channel().queue_declare(pvsim_config.queue, durable=True,
                                           arguments={"x-max-length": 5})
    finally:
        connection.close()
    began = time.monotonic()
    daemon = daemons.start(name, pvsim_config, wait=False)
    wait_for(lambda: not daemon.running(), timeout=30, message=f"pvsim-{name} to stop")
    assert daemon.proc.returncode == 78, daemon.log()
    assert time.monotonic() - began < 30
    log = daemon.log()
    errors = [line for line in log.splitlines() if "RabbitMQ refused to declare" in line]
    assert len(errors) == 1, log  # one line, once: never retried
    assert f"the queue {pvsim_config.queue}: inequivalent arg '" in errors[0]
    assert "stopping (exit 78)" in errors[0]
    assert "retrying" not in log and "Traceback" not in log
