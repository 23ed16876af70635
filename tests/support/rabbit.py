"""RabbitMQ for tests: the tests' private node, the machine's broker (for the benches), and the
clean-up of a test's queues and exchanges.

Every broker test runs against ONE private node per pytest session (`rabbitmq` in
tests/conftest.py): a one-node `rig.Cluster` on ports, directories, node name and Erlang cookie of
its own, so that the tests neither depend on the machine's RabbitMQ nor change it, and a test that
stops, restarts or alarms the broker (`private_rabbitmq`) does so to that node alone. The benches
measure the machine's broker (`SYSTEM_AMQP_URL`), as `make bench` always has.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.support.rig import Cluster, ClusterError

SYSTEM_AMQP_HOST, SYSTEM_AMQP_PORT = "127.0.0.1", 5672
SYSTEM_AMQP_URL = f"amqp://guest:guest@{SYSTEM_AMQP_HOST}:{SYSTEM_AMQP_PORT}/%2F"


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class RabbitNode:
    """The tests' private RabbitMQ: node 0 of a one-node rig (see tests/support/rig.py).

    Its Mnesia data lives as long as the node, so durable queues and persistent messages survive
    `stop()` and `start()`, as on a real restart; `kill()` is a SIGKILL of its process group.
    """

    def __init__(self, directory: Path) -> None:
        self.rig = Cluster(directory, nodes=1)

    @property
    def name(self) -> str:
        return self.rig.nodes[0].name

    @property
    def port(self) -> int:
        return self.rig.nodes[0].amqp_port

    @property
    def url(self) -> str:
        return self.rig.url(0)

    @property
    def base(self) -> Path:
        """Its directory (logs under node0/log/)."""
        return self.rig.dir

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """`rabbitmqctl ARGS` against this node (with its cookie), whatever its outcome."""
        return self.rig.ctl(0, *args, timeout=timeout)

    def start(self) -> "RabbitNode":
        """Boot it the first time, or bring it back after `stop()` or `kill()`."""
        if self.rig.nodes[0].state == "new":
            self.rig.start()
        else:
            self.rig.start(0)
        return self

    def stop(self) -> None:
        """The real thing: `rabbitmqctl stop`, and wait for the server to exit."""
        self.rig.stop(0)

    def kill(self) -> None:
        self.rig.kill(0)

    def heal(self) -> None:
        """Running again, whatever a test did to it (for a node shared by the whole session)."""
        self.rig.heal()

    def close(self, keep_logs: bool = False) -> None:
        self.rig.close(keep_logs=keep_logs)


def delete_topology(channel, topology) -> None:
    """Remove a test's queues and exchanges (the daemons never delete theirs)."""
    for queue in (*topology.queues, topology.members_queue, topology.dead_letter_queue):
        if queue:
            channel.queue_delete(queue)
    for exchange in (topology.exchange, topology.dead_letter_exchange):
        channel.exchange_delete(exchange)


__all__ = ["SYSTEM_AMQP_URL", "ClusterError", "RabbitNode", "delete_topology", "port_open"]
