"""broker.urls against a real 3-node cluster: a run whose first node is dead connects to the next
and completes, its workers too."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import pytest

from pvsim import config as configmod
from pvsim.run.simulation import RunOptions, simulate

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def test_a_run_whose_first_node_is_down_goes_through_the_next(cluster, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pvsim.pipeline.broker")
    cluster.kill(0)
    cfg = configmod.Config()
    cfg = dataclasses.replace(cfg, timezone="Europe/Madrid", broker=dataclasses.replace(
        cfg.broker, url=configmod.BrokerConfig.url, urls=tuple(cluster.urls()),
        connect_attempts=2, retry_initial_seconds=0.05, retry_max_seconds=0.2))
    summary = simulate(cfg, RunOptions(date=dt.date(2026, 3, 28), days=2, step=60,
                                       output=tmp_path, jobs=2))
    # 28 March has 1440 minutes, 29 March (the clocks go forward) 1380.
    assert summary.readings == 1440 + 1380 and summary.transport == "rabbitmq"
    assert [p.name for p in summary.files] == ["pvsim-2026-03-28.csv", "pvsim-2026-03-29.csv"]
    down, up = cluster.url(0).split("@")[1], cluster.url(1).split("@")[1]
    assert f"RabbitMQ node amqp://guest:***@{down}" in caplog.text
    assert f"connected to RabbitMQ at amqp://guest:***@{up}" in caplog.text
