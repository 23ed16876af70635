"""A pvsim config file of a test's own: fresh exchange, queue and dead-letter names, free HTTP
ports, an output directory and a meter state file, on the broker the test was given."""

from __future__ import annotations

import copy
import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import pika

from tests.support.net import free_port
from tests.support.rabbit import SYSTEM_AMQP_URL, delete_topology


def _merge(base: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class PvsimConfig:
    """A config file of the test's own; `data` is what was written."""

    def __init__(self, directory: Path, url: str = SYSTEM_AMQP_URL) -> None:
        """`url` is the broker's: the `rabbitmq` fixture's for a test that talks to one; the
        default serves tests that only load the config (the fast tier refuses its port)."""
        self.dir = directory
        self.url = url
        tag = f"test.{uuid.uuid4().hex[:12]}"
        self.names = {"exchange": tag, "queue": f"{tag}.readings",
                      "dead_letter_exchange": f"{tag}.dead",
                      "dead_letter_queue": f"{tag}.readings.dead"}
        self.meter_port, self.pv_port = free_port(), free_port()
        self.output = directory / "out"
        self.state_file = directory / "meter.state"
        self.path = directory / "pvsim.yaml"
        self._connections: list = []
        self.data: dict[str, Any] = {
            "timezone": "Europe/Madrid",
            "log_level": "INFO",
            "broker": {"url": url, **self.names, "retry_initial_seconds": 0.1,
                       "retry_max_seconds": 1.0, "heartbeat_seconds": 10},
            "meter": {"id": ["smart-meter-0"], "listen": f"127.0.0.1:{self.meter_port}",
                      "state_file": str(self.state_file)},
            "pv": {"listen": f"127.0.0.1:{self.pv_port}"},
            "output": {"directory": str(self.output)},
        }
        self.write()

    def write(self, **changes: object) -> Path:
        self.data = _merge(copy.deepcopy(self.data), changes)
        self.path.write_text(json.dumps(self.data, indent=1))  # JSON is YAML
        return self.path

    def load(self):
        from pvsim import config
        return config.load(self.path)

    @property
    def output_dir(self) -> Path:
        return Path(self.data["output"]["directory"])

    @property
    def queue(self) -> str:
        return self.names["queue"]

    @property
    def exchange(self) -> str:
        return self.names["exchange"]

    @property
    def topology(self):
        """The daemons' topology (their shard queues too, when the config has a fleet), with an
        unbounded dead-letter queue, as pvsim 0.1 declared it."""
        from pvsim.pipeline.broker import Topology
        return dataclasses.replace(Topology.from_config(self.load()), dead_letter_max_length=0)

    def channel(self):
        """A channel on a connection of its own (closed at teardown), topology declared."""
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        self._connections.append(conn)
        ch = conn.channel()
        self.topology.declare(ch)
        return ch

    def cleanup(self) -> None:
        for conn in self._connections:
            if conn.is_open:
                try:
                    conn.close()
                except Exception:
                    pass
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url))
            delete_topology(conn.channel(), self.topology)
            conn.close()
        except Exception:
            pass
