"""The cluster rig (rig.py) and the RabbitMQ 3.10.8 behaviour issue 12 builds on.

The tests share one 3-node cluster (the module-scoped `cluster` fixture); a test that kills or stops
a node gets it back before the next test starts. Nothing here asserts a duration: every wait polls
until what is guaranteed has happened, with generous deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pika
import pytest

from tests.support.paths import PYTHON, ROOT
from tests.support.rig import Cluster, ClusterError, available
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

QUORUM = {"x-queue-type": "quorum"}


def unique(prefix: str) -> str:
    return f"rig.{prefix}.{uuid.uuid4().hex[:8]}"


def publish_confirmed(url: str, queue: str, *bodies: bytes) -> None:
    """Persistent messages, each confirmed by the broker (pika raises on a nack or no route)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for body in bodies:
            ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2),
                             mandatory=True)
    finally:
        conn.close()


def get_one(url: str, queue: str):
    """basic_get + ack of one message on a connection of its own: (body, properties) or None,
    also None while the queue cannot answer (e.g. during a leader election)."""
    try:
        conn = pika.BlockingConnection(pika.URLParameters(url))
    except pika.exceptions.AMQPError:
        return None
    try:
        ch = conn.channel()
        method, props, body = ch.basic_get(queue)
        if method is None:
            return None
        ch.basic_ack(method.delivery_tag)
        return body, props
    except pika.exceptions.AMQPError:
        return None
    finally:
        if conn.is_open:
            conn.close()


def delete_queue(cluster: Cluster, queue: str) -> None:
    for url in cluster.urls():
        try:
            conn = pika.BlockingConnection(pika.URLParameters(url))
            conn.channel().queue_delete(queue)
            conn.close()
            return
        except pika.exceptions.AMQPError:
            continue


def test_the_nodes_form_one_cluster(cluster: Cluster):
    names = {n.name for n in cluster.nodes}
    assert len(names) == 3
    for i in range(3):
        status = cluster.ctl_json(i, "cluster_status")
        assert set(status["running_nodes"]) == names, f"as node {i} sees it"
        assert set(status["disk_nodes"]) == names
        flags = {f["name"]: f["state"] for f in status["feature_flags"]}
        assert flags["quorum_queue"] == "enabled"
    urls = cluster.urls()
    assert len(set(urls)) == 3 and all(u.startswith("amqp://guest:guest@127.0.0.1:") for u in urls)
    for i, url in enumerate(urls):
        conn = pika.BlockingConnection(pika.URLParameters(url))
        assert conn.is_open, url
        conn.close()
    # a queue declared through one node is seen by all of them
    q = unique("seen")
    conn = cluster.connection(0)
    conn.channel().queue_declare(q, durable=True, arguments=QUORUM)
    for i in range(3):
        assert q in cluster.queues(via=i)
    conn.channel().queue_delete(q)


def test_quorum_queue_declared_published_and_consumed_through_three_nodes(cluster: Cluster):
    q = unique("qq")
    cluster.connection(0).channel().queue_declare(q, durable=True, arguments=QUORUM)
    info = cluster.queues()[q]
    assert info["type"] == "quorum"
    assert set(info["members"]) == {n.name for n in cluster.nodes}

    publish_confirmed(cluster.url(1), q, b"reading-1")
    got = wait_for(lambda: get_one(cluster.url(2), q), timeout=60, message="the message through node 2",
                   interval=0.3)
    body, props = got
    assert body == b"reading-1"
    assert props.delivery_mode == 2
    assert get_one(cluster.url(2), q) is None   # acked: gone, exactly once
    delete_queue(cluster, q)


def test_killing_the_leader_moves_leadership_and_keeps_the_messages(cluster: Cluster):
    q = unique("failover")
    cluster.connection(0).channel().queue_declare(q, durable=True, arguments=QUORUM)
    leader = cluster.quorum_leader(q)
    survivor = (leader + 1) % 3
    publish_confirmed(cluster.url(survivor), q, b"m1", b"m2")

    cluster.kill(leader)
    assert not cluster.nodes[leader].alive()
    new_leader = cluster.quorum_leader(q)
    assert new_leader != leader
    assert cluster.nodes[new_leader].alive()
    assert cluster.nodes[leader].name not in cluster.running_nodes(survivor)
    # confirmed messages survive the loss of the leader: the first one through a survivor
    body, _ = wait_for(lambda: get_one(cluster.url(survivor), q), timeout=60, message="m1 after the failover",
                       interval=0.3)
    assert body == b"m1"

    cluster.start(leader)   # returns once every node lists it as running again
    names = {n.name for n in cluster.nodes}
    for i in range(3):
        assert cluster.running_nodes(i) == names
    # its member of the queue catches up and follows (or leads) again
    wait_for(lambda: cluster.quorum_status(q).get(leader) in ("follower", "leader"), timeout=60,
             message=f"node {leader} to be a member of {q} again", interval=0.3)
    # and the rest of the queue is there, through the node that came back
    body, _ = wait_for(lambda: get_one(cluster.url(leader), q), timeout=60,
                       message="m2 through the restarted node", interval=0.3)
    assert body == b"m2"
    assert get_one(cluster.url(leader), q) is None
    delete_queue(cluster, q)


def test_stop_app_and_clean_stop_then_back(cluster: Cluster):
    names = {n.name for n in cluster.nodes}
    cluster.stop_app(2)
    assert cluster.nodes[2].alive()   # the VM stays
    assert cluster.running_nodes(0) == names - {cluster.nodes[2].name}
    cluster.start(2)
    cluster.stop(1)
    assert not cluster.nodes[1].alive()
    assert cluster.running_nodes(0) == names - {cluster.nodes[1].name}
    cluster.start(1)
    for i in range(3):
        assert cluster.running_nodes(i) == names


CONSUMER = r"""
import json, sys, pika
url, queue, tag, ack = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "ack"
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.basic_qos(prefetch_count=10)
def on_message(ch, method, props, body):
    print(json.dumps({"body": body.decode(), "redelivered": method.redelivered}), flush=True)
    if ack:
        ch.basic_ack(method.delivery_tag)
ch.basic_consume(queue, on_message, consumer_tag=tag)
print(json.dumps({"ready": True}), flush=True)
ch.start_consuming()
"""


class Consumer:
    """A consumer in a process of its own (as a pvsim-pv would be), printing what it receives."""

    def __init__(self, url: str, queue: str, tag: str, ack: bool) -> None:
        self.tag = tag
        self.proc = subprocess.Popen([PYTHON, "-c", CONSUMER, url, queue, tag,
                                      "ack" if ack else "hold"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: self.ready or self.proc.poll() is not None, timeout=60,
                 message=f"consumer {tag} to subscribe", interval=0.3)
        assert self.ready, f"consumer {tag} failed: {self.proc.stderr.read()}"

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    @property
    def ready(self) -> bool:
        return any(line.get("ready") for line in self.lines)

    @property
    def received(self) -> list[dict]:
        return [line for line in self.lines if "body" in line]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


def test_single_active_consumer_hands_over_when_the_active_one_dies(cluster: Cluster):
    q = unique("sac")
    cluster.connection(2).channel().queue_declare(
        q, durable=True, arguments={**QUORUM, "x-single-active-consumer": True})

    def status() -> dict[str, str]:
        return {c["consumer_tag"]: c["activity_status"] for c in cluster.consumers()
                if c["queue_name"] == q}

    a = Consumer(cluster.url(0), q, "A", ack=False)    # holds what it gets, unacked
    b = None
    try:
        wait_for(lambda: status() == {"A": "single_active"}, timeout=60,
                 message="A to be the active consumer", interval=0.3)
        b = Consumer(cluster.url(1), q, "B", ack=True)
        wait_for(lambda: status() == {"A": "single_active", "B": "waiting"}, timeout=60,
                 message="B to wait behind A", interval=0.3)

        publish_confirmed(cluster.url(2), q, b"m1")
        wait_for(lambda: a.received, timeout=60, message="A to receive m1", interval=0.3)
        assert a.received == [{"body": "m1", "redelivered": False}]
        assert b.received == []

        a.kill()   # kill -9 of the active consumer's process: its connection dies
        wait_for(lambda: b.received, timeout=60, message="B to take over m1", interval=0.3)
        assert b.received == [{"body": "m1", "redelivered": True}]
        wait_for(lambda: status() == {"B": "single_active"}, timeout=60,
                 message="B to be the active consumer", interval=0.3)

        publish_confirmed(cluster.url(0), q, b"m2")
        wait_for(lambda: len(b.received) == 2, timeout=60, message="B to receive m2", interval=0.3)
        assert b.received[1] == {"body": "m2", "redelivered": False}
    finally:
        a.kill()
        if b is not None:
            b.kill()
        delete_queue(cluster, q)


# ---- the rig itself, on one node (quick to start) -------------------------------------------------

def test_a_node_that_cannot_start_says_why(tmp_path: Path):
    if available():
        pytest.skip(available())
    rig = Cluster(tmp_path / "bad", nodes=1, extra_config="this line is not = { valid")
    try:
        with pytest.raises(ClusterError) as e:
            rig.start()
        message = str(e.value)
        assert rig.nodes[0].name in message
        assert str(rig.nodes[0].dir) in message
        assert "Syntax error in" in message and "rabbitmq.conf" in message   # the reason
        assert not rig.nodes[0].alive()
    finally:
        rig.close()
    assert not (tmp_path / "bad").exists()


BABYSITTER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
from tests.support.rig import Cluster
rig = Cluster(sys.argv[1], nodes=1).start()
print(json.dumps({"url": rig.url(0), "beam": rig.nodes[0].beam_pid(),
                  "group": rig.nodes[0].pgid}), flush=True)
time.sleep(600)
"""


def test_nodes_die_with_the_process_that_started_them(tmp_path: Path):
    """Even a SIGKILLed test run leaves no RabbitMQ node behind (setpriv --pdeathsig)."""
    if available():
        pytest.skip(available())
    parent = subprocess.Popen([PYTHON, "-c", BABYSITTER, str(tmp_path / "rig"),
                               str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        assert line, "the rig did not start"
        info = json.loads(line)
        assert info["beam"]
        conn = pika.BlockingConnection(pika.URLParameters(info["url"]))
        conn.close()
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

        wait_for(lambda: gone(info["beam"]), timeout=90, message="the node's VM to exit", interval=0.3)
    finally:
        if parent.poll() is None:
            parent.kill()
        rig = Cluster.attach(tmp_path / "rig")
        rig.close()


def test_cli_up_status_down(tmp_path: Path):
    if available():
        pytest.skip(available())
    directory = tmp_path / "cli"

    def rig(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-m", "tests.cluster.rig", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    up = rig("up", str(directory), "--nodes", "1")
    try:
        assert up.returncode == 0, up.stderr
        urls = [w for w in up.stdout.split() if w.startswith("amqp://")]
        assert len(urls) == 1
        conn = pika.BlockingConnection(pika.URLParameters(urls[0]))   # outlives the `up` command
        conn.close()
        status = rig("status", str(directory))
        assert status.returncode == 0 and "running" in status.stdout
        ctl = rig("ctl", str(directory), "0", "--", "list_queues", "name")
        assert ctl.returncode == 0, ctl.stderr
        beam = Cluster.attach(directory).nodes[0].beam_pid()
        assert beam is not None
    finally:
        down = rig("down", str(directory))
    assert down.returncode == 0, down.stderr
    assert not directory.exists()
    wait_for(lambda: not Path(f"/proc/{beam}/environ").exists()
             or b"pvsim-rig" not in Path(f"/proc/{beam}/environ").read_bytes(), timeout=60,
             message="the node's VM to exit", interval=0.3)
