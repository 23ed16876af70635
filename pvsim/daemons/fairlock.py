"""A lock that serves its waiters in turn: the thread that releases it cannot take it straight
back while another waits.

pvsim-pv's consuming thread and the JOI API's POSTs share the PV service. CPython's Lock makes no
promise of order, and a thread that releases and re-acquires in a loop (a POST processed chunk by
chunk) can keep a waiter out for the whole loop: the consumer would then miss its broker's
heartbeats. With tickets, each waiter gets the lock after the holder it queued behind, so neither
path holds up the other for longer than one chunk or one message.
"""

from __future__ import annotations

import threading


class FairLock:
    """A non-reentrant lock granted in the order it was asked for (a ticket lock)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next_ticket = 0
        self._serving = 0

    def acquire(self) -> None:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._cond.wait()

    def release(self) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()

    def __enter__(self) -> "FairLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
