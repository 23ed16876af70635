"""The daemons with fleet.shards on the local RabbitMQ (quorum queues work on one node too):
pvsim-meter sends each shard its own messages, pvsim-pv writes shard files, a POST is routed
through the broker to its shard's writer, and a message in the wrong shard's queue is refused.
The cluster, the takeovers and the faults are in tests/cluster/test_fleet.py."""

from __future__ import annotations

import json
import signal
import urllib.request

import pika

from tests.support.csvfiles import csv_instants
from tests.support.daemons import http_get
from tests.support.waiting import wait_for
from pvsim.model.shard import shard_of
from pvsim.pipeline.csvformat import all_day_files
from pvsim.pipeline.messages import encode_columns

SHARDS = 4
METERS = [f"meter-{i:06d}" for i in range(1, 13)]


def test_a_one_host_fleet_writes_shard_files_routes_posts_and_refuses_strays(pvsim_config, daemons):
    pvsim_config.data["meter"].pop("id")
    pvsim_config.write(meter={"count": len(METERS)}, fleet={"shards": SHARDS})
    assert pvsim_config.topology.queues[1] == pvsim_config.queue + ".s01"  # cleaned up after
    pv = daemons.start("pv", pvsim_config)
    meter = daemons.start("meter", pvsim_config)
    wait_for(lambda: pv.metric("pvsim_pv_shards_written") == SHARDS, timeout=30,
             message="pvsim-pv writing every shard")
    files = {s for _, s, _ in all_day_files(pvsim_config.output_dir)}
    assert files == {shard_of(m, SHARDS) for m in METERS}

    # POST: published to the meter's shard queue, written by that shard's writer.
    posted = {"smartMeterId": "posted-1", "electricityReadings": [
        {"time": 1767225600 + i, "reading": 0.5 + i / 10} for i in range(3)]}
    request = urllib.request.Request(f"http://127.0.0.1:{pvsim_config.pv_port}/readings/store",
                                     data=json.dumps(posted).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
    wait_for(lambda: len(json.loads(http_get(pvsim_config.pv_port, "/readings/read/posted-1")[1]))
             == 3, timeout=30, message="the posted readings readable")

    # A stray: a meter of shard 1 in shard 0's queue is dead-lettered, not written.
    stray = next(m for m in (f"x-{i}" for i in range(100)) if shard_of(m, SHARDS) == 1)
    connection = pika.BlockingConnection(pika.URLParameters(pvsim_config.url))
    channel = connection.channel()  # the daemon declared the topology, bounded dead letters
    body = next(encode_columns([stray], [1767225600], [[100.0]]))
    channel.basic_publish(pvsim_config.exchange, pvsim_config.queue + ".s00", body,
                          pika.BasicProperties(delivery_mode=2))
    wait_for(lambda: channel.queue_declare(pvsim_config.names["dead_letter_queue"], passive=True)
             .method.message_count == 1, timeout=30, message="the stray dead-lettered")
    _, props, _ = channel.basic_get(pvsim_config.names["dead_letter_queue"], auto_ack=True)
    assert props.headers["x-pvsim-reason"] == "wrong_shard"
    assert pv.metric("pvsim_pv_messages_rejected_total", reason="wrong_shard") == 1
    connection.close()

    assert meter.stop(signal.SIGTERM) == 0
    last = json.loads(pvsim_config.state_file.read_text())["last_confirmed"]
    wait_for(lambda: all(max(csv_instants(pvsim_config.output_dir).get(m, [0])) >= last[m]
                         for m in METERS), timeout=60, message="every confirmed reading written")
    assert pv.stop(signal.SIGTERM) == 0
    rows = csv_instants(pvsim_config.output_dir)
    assert sorted(rows) == sorted(METERS + ["posted-1"])
    for m in METERS:
        assert sorted(rows[m]) == list(range(min(rows[m]), last[m] + 1)), f"{m}: not once each"
