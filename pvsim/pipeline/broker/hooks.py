"""The one interface between the broker and what it drives, as dramatiq's middleware is one.

A daemon's link to RabbitMQ (`run_sessions`) tells its `SessionHooks` when to stop, when a
resource alarm blocks or unblocks the connection, and when a session ended and why. A
`Consumer` also tells its `ConsumerHooks` every step of a message's way, so what happens to a
message reads in one place:

    consuming(link)  the queues are declared and consumed: a message published now waits for us
    handle_message   a message of queue i: its rows are written (raise InvalidMessage to have it
                     dead-lettered); the rows count toward the next sync
    sync             make every row handled so far durable: an ack follows at once
    rejected(error)  a message was dead-lettered (after a sync, confirmed, then acked)
    idle             no message waiting: everything is synced and acknowledged
    dead_letter_depth(n)  the dead-letter queue's depth (at start, soon after a reject, and
                     every DEPTH_SECONDS)
    handed_off(i)    queue i (a fleet's shard) was given to a standby: let go of its files
    should_stop      asked between two messages (and while waiting to reconnect)

A class that subclasses these Protocols explicitly inherits the do-nothing defaults below and
implements only what it needs; `should_stop`, `handle_message` and `sync` have none (mypy
refuses to instantiate a class that lacks one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pvsim.pipeline.broker.connection import Link
    from pvsim.pipeline.broker.errors import BrokerError
    from pvsim.pipeline.messages import InvalidMessage


class SessionHooks(Protocol):
    """What `run_sessions` tells the thread whose link to RabbitMQ it keeps."""

    def should_stop(self) -> bool:
        """Whether to end the session (and stop reconnecting); asked often: keep it cheap."""

    def blocked(self, blocked: bool) -> None:
        """RabbitMQ blocked (True) or unblocked (False) the connection: a memory or disk alarm.
        Called from inside pika's I/O: only set flags."""
        return None

    def session_ended(self, error: BrokerError | None) -> None:
        """A session ended: by `error` (a lost link, a refused publish), or None when it
        returned or ended by an error that is not the broker's (which then propagates)."""
        return None


class ConsumerHooks(SessionHooks, Protocol):
    """What a `Consumer` drives: the messages of its queues, and the events of its session."""

    def consuming(self, link: Link) -> None:
        """The topology is declared and the queues consumed; `link.sleep` serves the connection
        while a message is held."""
        return None

    def handle_message(self, queue: int, body: bytes, redelivered: bool) -> int:
        """Handle a message of `topology.queues[queue]`; the rows it added (the next sync makes
        them durable). Raise InvalidMessage to have it dead-lettered. `redelivered`: RabbitMQ
        gave it to a consumer before."""

    def sync(self) -> None:
        """Make everything handled so far durable (the acknowledgement follows)."""

    def rejected(self, error: InvalidMessage) -> None:
        """A message was dead-lettered for `error`."""
        return None

    def idle(self) -> None:
        """Nothing is waiting; everything handled is synced and acknowledged."""
        return None

    def dead_letter_depth(self, depth: int) -> None:
        """The dead-letter queue holds `depth` messages."""
        return None

    def handed_off(self, queue: int) -> None:
        """Queue `queue` went to a standby consumer: let go of what it held."""
        return None
