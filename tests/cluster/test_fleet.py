"""A fleet on a 3-node RabbitMQ cluster: two pvsim-meter instances and pvsim-pv instances over 16
shards of 1,000 meters, through the faults a fleet lives with, and every reading written once.

The scenario (issue 12's proof on one host): start three pvsim-pv and two pvsim-meter; once the
shards are spread, kill -9 the pvsim-pv writing the most shards (its standbys take over); stop
the broker node leading the most shard queues (leaders move, every program reconnects to
another node) and start it again; add a fourth pvsim-pv (it gets a share); stop one cleanly
(exit 0, its shards are taken over); send a message that is not JSON (dead-lettered with its
reason). Then stop the meters, let the queues drain, stop the pvsim-pv, and check the files:
every (meter, second) exactly once, no gap from each meter's first second to the last one its
meter had confirmed, and the shards' owner records show no shard ever held by two processes.
Nothing here asserts how fast anything happened: each step waits (with a generous limit) for
the state it needs.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import signal
import time
import uuid
from pathlib import Path

import pika
import pytest

from tests.support.daemons import DaemonProcess
from tests.support.net import free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

SHARDS = 16
METERS = 1000


class Fleet:
    """Config files and processes of one fleet on the cluster."""

    def __init__(self, cluster, directory: Path) -> None:
        self.cluster, self.dir = cluster, directory
        tag = f"fleet.{uuid.uuid4().hex[:8]}"
        self.names = {"exchange": tag, "queue": f"{tag}.readings",
                      "dead_letter_exchange": f"{tag}.dead", "dead_letter_queue": f"{tag}.dead"}
        self.output = directory / "out"
        self.meters: list[DaemonProcess] = []
        self.pvs: list[DaemonProcess] = []

    def _config(self, name: str, **sections) -> "_Config":
        data = {"timezone": "Europe/Madrid", "log_level": "INFO",
                "broker": {"urls": self.cluster.urls(), **self.names, "heartbeat_seconds": 5,
                           "retry_initial_seconds": 0.1, "retry_max_seconds": 1.0},
                "meter": {"count": METERS}, "fleet": {"shards": SHARDS, "instances": 2},
                "output": {"directory": str(self.output)}, **sections}
        return _Config(self.dir, name, data)

    def start_meter(self, instance: int) -> DaemonProcess:
        port = free_port()
        cfg = self._config(f"meter{instance}", meter={
            "count": METERS, "listen": f"127.0.0.1:{port}",
            "state_file": str(self.dir / f"meter{instance}.state")},
            fleet={"shards": SHARDS, "instances": 2, "instance": instance})
        proc = _Daemon("meter", cfg, port).start()
        self.meters.append(proc)
        return proc

    def start_pv(self) -> DaemonProcess:
        port = free_port()
        cfg = self._config(f"pv{len(self.pvs)}", pv={"listen": f"127.0.0.1:{port}"})
        proc = _Daemon("pv", cfg, port).start()
        self.pvs.append(proc)
        return proc

    def running_pvs(self) -> list[DaemonProcess]:
        return [p for p in self.pvs if p.running()]

    def shards_of(self, pv: DaemonProcess) -> int:
        return int(pv.metric("pvsim_pv_shards_written"))

    def written(self) -> float:
        return sum(p.metric("pvsim_pv_readings_written_total") for p in self.running_pvs())

    def spread(self) -> bool:
        """Every shard written, none by an instance beyond its fair share."""
        held = [self.shards_of(p) for p in self.running_pvs()]
        share = -(-SHARDS // len(held))
        return sum(held) == SHARDS and max(held) <= share

    def channel(self):
        node = next(i for i, n in enumerate(self.cluster.nodes) if n.alive())
        return self.cluster.connection(node).channel()

    def depth(self) -> int:
        """Messages ready or unacknowledged in the shard queues."""
        queues = self.cluster.queues()
        return sum(int(q["messages"]) for name, q in queues.items()
                   if name.startswith(self.names["queue"] + ".s"))

    def stop_all(self) -> None:
        for proc in self.meters + self.pvs:
            if proc.running():
                proc.stop(signal.SIGTERM, timeout=30)


class _Config:
    def __init__(self, directory: Path, name: str, data: dict) -> None:
        self.dir, self.data = directory, data
        self.path = directory / f"{name}.yaml"
        self.path.write_text(json.dumps(data, indent=1))
        self.meter_port = self.pv_port = 0


class _Daemon(DaemonProcess):
    def __init__(self, name: str, cfg: _Config, port: int) -> None:
        cfg.meter_port = cfg.pv_port = port
        super().__init__(name, cfg)
        self.log_path = cfg.path.with_suffix(".log")


def settled(what: str, predicate, timeout: float = 120.0, every: float = 0.5) -> None:
    """Wait for a state of the fleet; a daemon or a node between two states is not there yet."""
    wait_for(predicate, timeout, every, what, ignoring=(OSError, ValueError, KeyError))


def rows(output: Path) -> collections.Counter:
    """(meter, instant) -> times written, over every shard file."""
    seen: collections.Counter = collections.Counter()
    for path in sorted(output.glob("pvsim-*.csv")):
        with open(path, encoding="utf-8") as f:
            assert f.readline() == "timestamp,meter_id,meter_w,meter_kw,pv_kw,net_kw\n"
            for line in f:
                assert line.endswith("\n") and line.count(",") == 5, f"{path.name}: {line!r}"
                stamp, meter = line.split(",", 2)[:2]
                seen[(meter, int(dt.datetime.fromisoformat(stamp).timestamp()))] += 1
    return seen


def owner_intervals(output: Path, killed: dict[int, float]) -> None:
    """Check each shard's owner record: a shard is taken by one process at a time. A taking
    while another holds it is allowed only after that holder was killed (the kernel freed its
    lock), never while it lived."""
    for journal in sorted(output.glob(".pvsim-s*.owners")):
        holder: tuple[int, float] | None = None
        for line in journal.read_text().splitlines():
            at, event, _host, pid = line.split()
            at_f, pid_i = float(at), int(pid)
            if event == "taken":
                if holder is not None:
                    assert holder[0] in killed and at_f >= killed[holder[0]], (
                        f"{journal.name}: pid {pid_i} took it at {at} while pid {holder[0]} "
                        f"held it:\n{journal.read_text()}")
                holder = (pid_i, at_f)
            else:
                assert holder is not None and holder[0] == pid_i, (
                    f"{journal.name}: pid {pid_i} released what it did not hold")
                holder = None


def test_a_fleet_writes_every_reading_once_through_kills_node_stops_and_scaling(cluster, tmp_path):
    fleet = Fleet(cluster, tmp_path)
    killed: dict[int, float] = {}
    try:
        for _ in range(3):
            fleet.start_pv().wait_healthy(60)
        for instance in (0, 1):
            fleet.start_meter(instance).wait_healthy(60)
        settled("the shards spread over 3 pvsim-pv", fleet.spread)

        # kill -9 the busiest pvsim-pv: the standbys take its shards over.
        victim = max(fleet.running_pvs(), key=fleet.shards_of)
        killed[victim.pid] = time.time()
        victim.kill()
        settled("the survivors to write all 16 shards", fleet.spread)

        # Stop the node leading the most shard queues: leaders move, everyone reconnects.
        leaders = collections.Counter(q["leader"] for name, q in cluster.queues().items()
                                      if name.startswith(fleet.names["queue"] + ".s"))
        node = cluster.index_of(leaders.most_common(1)[0][0])
        before = fleet.written()
        cluster.stop(node)
        settled("rows written again after the node stopped",
                lambda: fleet.spread() and fleet.written() > before + 5 * METERS)
        cluster.start(node)

        # A fourth pvsim-pv joins and gets a share; then one leaves cleanly.
        fleet.start_pv().wait_healthy(60)
        settled("the shards spread over 3 pvsim-pv again", fleet.spread)
        leaving = fleet.running_pvs()[0]
        assert leaving.stop(signal.SIGTERM, timeout=30) == 0
        settled("the others to take the leaver's shards", fleet.spread)

        # Not JSON: dead-lettered at once, with the reason, never written.
        channel = fleet.channel()
        channel.basic_publish(fleet.names["exchange"], fleet.names["queue"] + ".s03", b"{not json",
                              pika.BasicProperties(delivery_mode=2))
        settled("the poison in the dead-letter queue", lambda: channel.queue_declare(
            fleet.names["dead_letter_queue"], passive=True).method.message_count == 1)

        before = fleet.written()
        settled("a few more seconds of readings", lambda: fleet.written() > before + 10 * METERS)
        for meter in fleet.meters:
            assert meter.stop(signal.SIGTERM, timeout=30) == 0
        settled("the shard queues to drain", lambda: fleet.depth() == 0, timeout=180, every=2)
        for pv in fleet.running_pvs():
            assert pv.stop(signal.SIGTERM, timeout=30) == 0
    except BaseException:
        for proc in fleet.meters + fleet.pvs:
            print(f"--- {proc.log_path.name}\n{proc.log()[-4000:]}")
        raise
    finally:
        fleet.stop_all()

    seen = rows(fleet.output)
    doubled = [key for key, n in seen.items() if n > 1]
    assert not doubled, f"{len(doubled)} readings written twice, e.g. {doubled[:3]}"
    by_meter: dict[str, set[int]] = collections.defaultdict(set)
    for meter, instant in seen:
        by_meter[meter].add(instant)
    assert len(by_meter) == METERS
    confirmed: dict[str, int] = {}
    for instance in (0, 1):
        state = json.loads((tmp_path / f"meter{instance}.state").read_text())
        confirmed.update(state["last_confirmed"])
    assert len(confirmed) == METERS
    for meter, instants in by_meter.items():
        first = min(instants)
        assert max(instants) >= confirmed[meter], f"{meter}: confirmed readings missing"
        missing = set(range(first, max(instants) + 1)) - instants
        assert not missing, f"{meter}: {len(missing)} seconds missing, e.g. {sorted(missing)[:3]}"
    owner_intervals(fleet.output, killed)
    dead = fleet.channel().basic_get(fleet.names["dead_letter_queue"], auto_ack=True)
    assert dead[1].headers["x-pvsim-reason"] == "not_json"


def test_a_message_whose_consumer_dies_each_time_is_dead_lettered_after_the_delivery_limit(
        cluster, tmp_path):
    """The safety net under pvsim-pv's own dead-lettering: a message that kills its consumer
    every time (whatever the bug) goes round `broker.delivery_limit` times, then RabbitMQ moves
    it to the dead-letter queue (at-least-once: never dropped on the way), and the shard's
    next message flows again."""
    from pvsim import config as configmod
    from pvsim.pipeline import broker

    tag = f"poison.{uuid.uuid4().hex[:8]}"
    cfg = configmod.parse(json.dumps({
        "broker": {"urls": cluster.urls(), "exchange": tag, "queue": f"{tag}.readings",
                   "dead_letter_exchange": f"{tag}.dead", "dead_letter_queue": f"{tag}.dead",
                   "delivery_limit": 3},
        "fleet": {"shards": 4}}))
    topology = broker.Topology.from_config(cfg)
    publisher = broker.Publisher(broker.Link(cluster.connection(0)), topology)
    publisher.publish(b"poison", shard_index=2)
    publisher.publish(b"next", shard_index=2)
    deliveries = 0
    while True:  # a consumer that takes the poison and dies without settling it
        connection = cluster.connection(1)
        channel = connection.channel()
        channel.basic_qos(prefetch_count=1)  # it holds the poison alone
        method, _props, body = next(channel.consume(topology.queues[2], inactivity_timeout=30))
        if body != b"poison":
            break
        deliveries += 1
        connection.close()  # as a killed process's connection: the message goes back
    assert body == b"next" and deliveries == 4  # the first delivery and 3 more
    channel.basic_ack(method.delivery_tag)
    dead = cluster.connection(0).channel()
    settled("the poison in the dead-letter queue", lambda: dead.queue_declare(
        topology.dead_letter_queue, passive=True).method.message_count == 1, timeout=30)
    method, props, body = dead.basic_get(topology.dead_letter_queue, auto_ack=True)
    assert body == b"poison"
    death = props.headers["x-death"][0]
    assert (death["reason"], death["queue"]) == ("delivery_limit", topology.queues[2])


def test_a_fleet_run_through_the_cluster_writes_the_same_bytes_as_without_a_broker(cluster, tmp_path):
    """pvsim-run --meters N with fleet.shards, through the cluster (its first node down, two
    workers), gives byte for byte the shard files a broker-less run of the same fleet gives."""
    import dataclasses

    from pvsim import config as configmod
    from pvsim.run.simulation import RunOptions, simulate

    cluster.kill(0)
    cfg = configmod.with_meter_count(configmod.Config(), 300)
    cfg = dataclasses.replace(
        cfg, timezone="Europe/Madrid", fleet=configmod.FleetConfig(shards=SHARDS),
        broker=dataclasses.replace(cfg.broker, urls=tuple(cluster.urls()), connect_attempts=2,
                                   retry_initial_seconds=0.05, retry_max_seconds=0.2))
    outputs = {}
    for broker_name in ("rabbitmq", "none"):
        out = tmp_path / broker_name
        summary = simulate(cfg, RunOptions(date=dt.date(2026, 3, 28), days=2, step=600,
                                           output=out, jobs=2, broker=broker_name))
        assert summary.readings == 300 * (144 + 138)  # 29 March has 23 hours
        outputs[broker_name] = {p.name: p.read_bytes() for p in out.glob("pvsim-*.csv")}
    assert len(outputs["none"]) == 2 * SHARDS
    assert sorted(outputs["none"])[:2] == ["pvsim-2026-03-28.s00.csv", "pvsim-2026-03-28.s01.csv"]
    assert outputs["rabbitmq"] == outputs["none"]
