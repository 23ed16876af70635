"""A run's days over worker processes: start them, draw their progress, gather their results,
and stop them all at the first failure.

pvsim-run hands each worker a share of its days: the worker runs the same function a
single-process run runs for all of them, on its own RabbitMQ connections and run queue and its
own CSV files (one file per local day, so no two workers share one), and sends back what the
summary needs of those days. Workers are forked, so they start at once with the config and the
models already loaded; no pika connection is open at the fork (each worker opens its own, as
pika connections must not cross a fork).

A worker's failure (RabbitMQ lost, a full disk, a rejected message) ends the run with that
worker's own one-line message and exit status (RunFailed); the others are stopped with SIGTERM,
which they take as an interrupt at their next message (`stopping`), so that each closes its CSV
files and deletes its run queue
(else the queue expires by itself, as with any run that dies), and are killed if they are not
gone within STOP_SECONDS. A worker whose parent dies stops too: no orphan runs on.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

STOP_SECONDS = 15.0      # how long a stopped worker may take to clean up before it is killed
POLL_SECONDS = 0.2       # how often the parent redraws the progress bar

S = TypeVar("S")  # a share of the run
R = TypeVar("R")  # what a worker sends back

# report(rows done, last instant): a worker telling its progress
Report = Callable[[int, int], None]
Task = Callable[[S, Report], R]


class RunFailed(Exception):
    """A worker's error, as the worker would have reported it: its message and exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Workers(Generic[S, R]):
    """Runs `task(share, report)` for each share in a process of its own.

    `results(draw)` returns the results in the order of the shares; `draw(rows, instants)`, when
    given, is called every POLL_SECONDS with each worker's rows done and last instant (0 before
    its first report). The exceptions a task raises that carry an `exit_code` (the run's
    expected failures) become RunFailed with the same message and code; any other is a bug,
    and its traceback is shown."""

    def __init__(self, task: Task[S, R], shares: Sequence[S]) -> None:
        self.task, self.shares = task, list(shares)
        self._context = multiprocessing.get_context("fork")
        # rows done and last instant of each worker, written by the worker, read by the parent
        self._progress = self._context.Array("q", 2 * len(self.shares), lock=False)
        self._procs: list[BaseProcess] = []  # the fork context's processes

    def results(self, draw: Callable[[list[int], list[int]], None] | None = None) -> list[R]:
        pending: dict[multiprocessing.connection.Connection, int] = {}
        results: list[R | None] = [None] * len(self.shares)
        done = False
        try:
            for index, share in enumerate(self.shares):
                reader, writer = self._context.Pipe(duplex=False)
                proc = self._context.Process(target=self._child, args=(index, share, writer),
                                             name=f"pvsim-run-worker-{index}", daemon=True)
                proc.start()
                writer.close()  # the worker holds the only writer: its death is EOF here
                self._procs.append(proc)
                pending[reader] = index
            while pending:
                ready = multiprocessing.connection.wait(list(pending), POLL_SECONDS)
                for reader in [r for r in pending if r in ready]:  # typed as the pipe ends
                    index = pending.pop(reader)
                    results[index] = self._receive(reader, index)
                if draw is not None:
                    draw(list(self._progress[0::2]), list(self._progress[1::2]))
            done = True
        finally:
            self._stop(at_once=not done)
        return results  # type: ignore[return-value]  # every one was received

    def _receive(self, reader: multiprocessing.connection.Connection, index: int) -> R:
        try:
            outcome, value = reader.recv()
        except EOFError:
            self._procs[index].join(STOP_SECONDS)
            raise RunFailed(f"worker {index} died (exit status {self._procs[index].exitcode}); "
                            "the run is incomplete", os.EX_SOFTWARE) from None
        finally:
            reader.close()
        if outcome == "done":
            return value
        if outcome == "failed":
            raise RunFailed(*value)
        if outcome == "interrupted":
            raise KeyboardInterrupt
        raise RuntimeError(f"worker {index} failed:\n{value}")

    def _stop(self, at_once: bool) -> None:
        """Wait for the workers to exit (they do once they have sent their result); `at_once`
        (a failure) sends them SIGTERM first. SIGKILL to any left after STOP_SECONDS."""
        for proc in self._procs:
            if at_once and proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("worker %s did not stop within %.0f s; killing it", proc.name,
                            STOP_SECONDS)
                proc.kill()
                proc.join()

    # --- in the worker ---------------------------------------------------------------------

    def _child(self, index: int, share: S, writer: multiprocessing.connection.Connection) -> None:
        signal.signal(signal.SIGTERM, _interrupt)  # stopped: clean up as after Ctrl-C
        signal.signal(signal.SIGINT, _interrupt)
        _watch_parent(os.getppid())
        progress = self._progress

        def report(rows: int, instant: int) -> None:
            progress[2 * index], progress[2 * index + 1] = rows, instant

        try:
            message: tuple[str, object] = ("done", self.task(share, report))
        except KeyboardInterrupt:
            message = ("interrupted", None)
        except Exception as exc:  # sent to the parent, which ends the run with it
            code = getattr(exc, "exit_code", None)
            message = (("failed", (str(exc), code)) if isinstance(code, int)
                       else ("bug", traceback.format_exc()))
        global _sending
        _sending = True  # a stop request now interrupts the send (the parent reads no more)
        try:
            if not _stop.is_set():
                writer.send(message)
        except (BrokenPipeError, KeyboardInterrupt):
            pass  # the parent is gone or stopping us: nobody waits for this result
        finally:
            writer.close()


_stop = threading.Event()  # set in a worker by SIGINT or SIGTERM
_sending = False  # the worker's task is over: it is sending its result


def stopping() -> bool:
    """Whether this process, a worker, was asked to stop (SIGINT or SIGTERM). The run's
    transport checks it between messages and ends there with KeyboardInterrupt, so that the
    worker's cleanup (its files closed, its run queue deleted) never follows a broker call cut
    in two by an exception raised from a signal handler, which can leave pika waiting for a
    reply that never comes. False in a process that is not a worker."""
    return _stop.is_set()


def _interrupt(signum: int, frame: object) -> None:
    """A worker's SIGINT and SIGTERM handler: ask the run to stop at its next safe point. The
    Ctrl-C a terminal sends every process of the run and the SIGTERM the parent sends next
    are one request. Once the task is over, a stop interrupts the sending of its result: a
    parent that stops its workers reads no more, and a large result would block in the pipe."""
    first = not _stop.is_set()
    _stop.set()
    if _sending and first:
        raise KeyboardInterrupt


def _watch_parent(parent: int) -> None:
    """Stop this worker (as with SIGTERM) if its parent dies: a killed pvsim-run leaves no
    worker running on."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="pvsim-run-watch-parent", daemon=True).start()
