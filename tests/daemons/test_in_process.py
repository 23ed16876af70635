"""The daemons' message logic in process, through the stub broker (tests/support/stubbroker.py): no
RabbitMQ, no subprocess, milliseconds a test (the fast tier). The real broker's tests
(test_daemons, test_hostile_messages, test_faults...) keep proving the integration; these prove
what the daemon does with a message through the same Topology, Publisher and Consumer classes:
a valid message becomes its CSV row and is acknowledged; a malformed one is dead-lettered with
its reason and counted; a lost link redelivers what was not acknowledged, and no row is written
twice; the meter's confirmed readings reach the PV daemon's CSV."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support.csvfiles import csv_instants
from pvsim import config as configmod
from pvsim.daemons.lifecycle import Lifecycle
from pvsim.daemons.meter import MeterDaemon
from pvsim.daemons.pv import PvDaemon
from pvsim.model.reading import Reading
from pvsim.pipeline import broker
from pvsim.pipeline.messages import encode
from tests.support.stubbroker import StubBroker

TZ = ZoneInfo("Europe/Madrid")
T0 = 1_782_043_200  # 2026-06-21 14:00 in Madrid


@pytest.fixture
def cfg(tmp_path) -> configmod.Config:
    return configmod.parse(json.dumps({
        "timezone": "Europe/Madrid",
        "meter": {"id": ["m"], "state_file": str(tmp_path / "meter.state")},
        "output": {"directory": str(tmp_path / "out")}}))


def reading(instant: int, meter: str = "m") -> Reading:
    return Reading(meter, instant, 1000.0, TZ)


def publish(stub: StubBroker, cfg: configmod.Config, *bodies: bytes) -> broker.Topology:
    """Declare the daemons' topology on the stub and publish `bodies`, confirmed."""
    topology = broker.Topology.from_config(cfg)
    publisher = broker.Publisher(stub.connect(), topology)
    for body in bodies:
        publisher.publish(body)
    return topology


def run_until(loop: Callable[[], None], life: Lifecycle, done: Callable[[], bool]) -> None:
    """Run a daemon's worker loop in a thread until `done()`, then stop it as SIGTERM would."""
    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while not done() and time.monotonic() < deadline:
        time.sleep(0.001)
    life.stop.set()
    worker.join(5)
    assert not worker.is_alive() and done()


def pv_daemon(cfg: configmod.Config, stub: StubBroker) -> tuple[PvDaemon, Lifecycle]:
    life = Lifecycle("pvsim-pv")
    return PvDaemon(cfg, life, rabbit=stub), life


def consume(cfg: configmod.Config, stub: StubBroker) -> PvDaemon:
    """The PV daemon consumes until its queue is empty and all of it acknowledged."""
    pv, life = pv_daemon(cfg, stub)
    run_until(pv.consume_loop, life, lambda: stub.settled(cfg.broker.queue))
    pv.close()
    return pv


def sample(daemon, name: str, **labels: str) -> float:
    return daemon.registry.get_sample_value(name, labels) or 0.0


def test_a_valid_message_becomes_its_row_and_is_acknowledged(cfg):
    stub = StubBroker()
    publish(stub, cfg, encode([reading(T0), reading(T0 + 1)]))
    pv = consume(cfg, stub)
    assert csv_instants(Path(cfg.output.directory)) == {"m": [T0, T0 + 1]}
    assert stub.acked == 1
    assert sample(pv, "pvsim_pv_readings_written_total") == 2
    assert sample(pv, "pvsim_broker_connected") == 0  # its session ended with the stop


def test_a_malformed_message_is_dead_lettered_with_its_reason_and_counted(cfg):
    stub = StubBroker()
    topology = publish(stub, cfg, b"not json", encode([reading(T0)]))
    pv = consume(cfg, stub)
    (dead,) = stub.queues[topology.dead_letter_queue]
    assert dead.body == b"not json"
    assert dead.properties.headers["x-pvsim-reason"] == "not_json"
    assert dead.properties.headers["x-pvsim-queue"] == topology.queue
    assert sample(pv, "pvsim_pv_messages_rejected_total", reason="not_json") == 1
    assert csv_instants(Path(cfg.output.directory)) == {"m": [T0]}  # the next one is written
    assert stub.acked == 2


def test_what_a_lost_link_redelivers_is_not_written_twice(cfg):
    """The rows are synced, then the ack is lost with the link: every message comes back,
    redelivered, to the next session, which recognises each reading and writes none again."""
    stub = StubBroker()
    publish(stub, cfg, *(encode([reading(t)]) for t in range(T0, T0 + 5)))
    stub.lose_connection_at_next_ack()
    pv = consume(cfg, stub)
    assert stub.sessions == 2
    assert csv_instants(Path(cfg.output.directory)) == {"m": list(range(T0, T0 + 5))}  # each once
    assert sample(pv, "pvsim_pv_duplicates_dropped_total") == 5
    assert sample(pv, "pvsim_pv_readings_written_total") == 5
    assert sample(pv, "pvsim_broker_connection_errors_total") == 1
    assert sample(pv, "pvsim_broker_reconnects_total") == 1


def test_the_meters_confirmed_readings_reach_the_pv_daemons_csv(cfg):
    stub = StubBroker()
    life = Lifecycle("pvsim-meter")
    meter = MeterDaemon(cfg, life, rabbit=stub)
    meter.buffer.put([reading(t) for t in range(T0, T0 + 10)])
    run_until(meter.publish_loop, life, lambda: len(meter.buffer) == 0)
    assert meter.published_total == 10 and meter.last_confirmed == {"m": T0 + 9}
    consume(cfg, stub)
    assert csv_instants(Path(cfg.output.directory)) == {"m": list(range(T0, T0 + 10))}


def test_a_message_no_queue_takes_is_refused_and_published_again(cfg):
    """Unroutable: the publish is refused (PublishRefused), the session ends, the meter counts
    it and publishes it again on the next session, once a queue is bound."""
    stub = StubBroker()
    life = Lifecycle("pvsim-meter")
    meter = MeterDaemon(cfg, life, rabbit=stub)
    meter.buffer.put([reading(T0)])
    refusals = 0
    original = stub.publish

    def publish_refusing_once(*args, **kwargs) -> bool:
        nonlocal refusals
        if refusals == 0:
            refusals += 1
            return False  # as if no queue were bound yet
        return original(*args, **kwargs)

    stub.publish = publish_refusing_once
    run_until(meter.publish_loop, life, lambda: len(meter.buffer) == 0)
    assert refusals == 1 and stub.sessions == 2
    assert sample(meter, "pvsim_meter_publish_errors_total") == 1
    assert len(stub.queues[cfg.broker.queue]) == 1


def test_a_fleet_member_above_its_share_hands_shards_to_standbys_and_writes_each_row_once(
        tmp_path, monkeypatch, caplog):
    """Four shards, and a second instance on the roll call: this one is active for all four, twice
    its fair share, so its balancer hands shards over (sync, requeue what it held, cancel,
    release the shard's files, subscribe again), and every reading is still written once."""
    import logging

    from pvsim.model.shard import shard_of
    from pvsim.pipeline.broker.balancer import Balancer

    monkeypatch.setattr(Balancer, "BALANCE_SECONDS", 0.0)
    caplog.set_level(logging.INFO, logger="pvsim.pipeline.broker")
    fleet = configmod.parse(json.dumps({
        "timezone": "Europe/Madrid", "fleet": {"shards": 4},
        "output": {"directory": str(tmp_path / "out")}}))
    meters = [f"meter-{i}" for i in range(12)]
    assert {shard_of(m, 4) for m in meters} == {0, 1, 2, 3}
    stub = StubBroker()
    topology = broker.Topology.from_config(fleet)
    publisher = broker.Publisher(stub.connect(), topology)
    for t in range(T0, T0 + 20):
        for m in meters:
            publisher.publish(encode([reading(t, m)]), shard_index=shard_of(m, 4))
    other = stub.connect().channel()  # the other instance, as the members queue counts it
    other.basic_consume(topology.members_queue, lambda *_: None, auto_ack=True)
    pv, life = pv_daemon(fleet, stub)
    run_until(pv.consume_loop, life, lambda: all(stub.settled(q) for q in topology.queues))
    pv.close()
    assert "handing" in caplog.text and "to standbys" in caplog.text
    rows = csv_instants(Path(fleet.output.directory))
    assert {m: sorted(got) for m, got in rows.items()} == {
        m: list(range(T0, T0 + 20)) for m in meters}  # each once, in every shard
    assert sample(pv, "pvsim_pv_shards_written") == 0  # all given up at the stop
