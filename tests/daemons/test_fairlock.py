"""The lock pvsim-pv's consumer and the JOI API share is taken in turn: a large POST, processed
chunk by chunk, lets a waiting consumer in after its first chunk, not after its last."""

from __future__ import annotations

import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

from tests.support.pvsimconfig import PvsimConfig
from pvsim.daemons import lifecycle
from pvsim.daemons.fairlock import FairLock
from pvsim.daemons.ingest import INGEST_CHUNK
from pvsim.daemons.pv import PvDaemon
from pvsim.model.reading import Reading

TZ = ZoneInfo("Europe/Madrid")


def queued(lock: FairLock, waiters: int) -> None:
    """Wait until `waiters` threads besides the holder have taken a ticket."""
    deadline = time.monotonic() + 10
    while lock._next_ticket - lock._serving < 1 + waiters:
        assert time.monotonic() < deadline, "the other thread never asked for the lock"
        time.sleep(0.001)


def test_a_waiter_goes_before_the_holder_asks_again():
    lock, order = FairLock(), []
    lock.acquire()

    def other() -> None:
        with lock:
            order.append("other")
    t = threading.Thread(target=other)
    t.start()
    queued(lock, 1)
    lock.release()
    with lock:  # straight back: behind the waiter
        order.append("holder again")
    t.join(10)
    assert order == ["other", "holder again"]


def test_a_large_post_lets_the_consumer_in_after_one_chunk(tmp_path):
    cfg = PvsimConfig(tmp_path).load()
    pv = PvDaemon(cfg, lifecycle.Lifecycle("test"))
    t0 = int(dt.datetime(2026, 6, 21, 10, tzinfo=TZ).timestamp())
    posted = [Reading("posted", t, 1000.0, TZ)
              for t in range(t0, t0 + 4 * INGEST_CHUNK)]
    message = [Reading("smart-meter-0", t0, 500.0, TZ)]
    posted_rows: list[int] = []
    posted_before_consumer: list[int] = []
    service = pv.node.service  # one node: every meter through one service
    consumer = threading.Thread(target=lambda: pv.pool.process(message, service))

    def on_row(row, nbytes) -> None:
        if row.meter_id == "posted":
            if not posted_rows:
                consumer.start()  # the consumer asks for the lock while the first chunk holds it
                queued(pv.pool.lock, 1)
            posted_rows.append(row.instant)
        else:
            posted_before_consumer.append(len(posted_rows))

    service.listeners.append(on_row)
    outcome = pv.app.ingest(posted)
    consumer.join(10)
    assert outcome.written == len(posted)
    assert posted_before_consumer == [INGEST_CHUNK]  # in after the first chunk, not the last
    pv.close()
