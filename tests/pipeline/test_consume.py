"""broker.Consumer against the real RabbitMQ: it syncs (and only then acks) at the latest every
`max_rows` rows, output.sync_rows, counted in rows, not in messages."""

from __future__ import annotations

import pika
import pytest

from pvsim.pipeline import broker


class Recorder(broker.ConsumerHooks):
    """Hooks whose message bodies say how many rows they write."""

    def __init__(self, messages: int) -> None:
        self.messages, self.handled = messages, 0
        self.unsynced = 0
        self.synced: list[int] = []

    def handle_message(self, queue: int, body: bytes, redelivered: bool) -> int:
        self.handled += 1
        self.unsynced += int(body)
        return int(body)

    def should_stop(self) -> bool:
        return self.handled == self.messages

    def sync(self) -> None:
        if self.unsynced:
            self.synced.append(self.unsynced)
        self.unsynced = 0


@pytest.mark.parametrize("per_message,max_rows", [(100, 250), (1, 1000), (700, 500)])
def test_rows_between_two_syncs_never_exceed_sync_rows_plus_one_message(pvsim_config, per_message, max_rows):
    channel = pvsim_config.channel()
    for _ in range(40):
        channel.basic_publish(pvsim_config.exchange, pvsim_config.queue, str(per_message).encode(),
                              pika.BasicProperties(delivery_mode=2))
    recorder = Recorder(40)
    link = broker.Link(pika.BlockingConnection(pika.URLParameters(pvsim_config.url)))
    try:
        broker.Consumer(link, pvsim_config.topology, recorder, prefetch=1000, max_rows=max_rows,
                        max_delay=60.0).run()
    finally:
        link.close()
    assert sum(recorder.synced) == 40 * per_message  # everything synced before stopping
    assert max(recorder.synced) <= max_rows + per_message - 1, recorder.synced
    assert pvsim_config.channel().queue_declare(pvsim_config.queue, passive=True).method.message_count == 0
