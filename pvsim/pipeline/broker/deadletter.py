"""Dead-lettering: a message that fails validation is republished to the dead-letter exchange,
confirmed, with the reason in headers (x-pvsim-reason, x-pvsim-detail, x-pvsim-queue), and only
then acknowledged by the consumer."""

from __future__ import annotations

import logging
import struct

import pika
import pika.exceptions

from pvsim.pipeline.broker.topology import Topology
from pvsim.pipeline.messages import MAX_BODY_BYTES, InvalidMessage

log = logging.getLogger(__name__)

REASON_HEADER = "x-pvsim-reason"
DETAIL_HEADER = "x-pvsim-detail"
# A body over MAX_BODY_BYTES (refused as oversized whatever it holds) is dead-lettered cut to
# this many bytes, its size in a header: enough to see what it was, and a few of them cannot
# push every other dead letter out of a queue bounded by bytes.
TRUNCATED_BYTES = 64 * 1024
SIZE_HEADER = "x-pvsim-original-bytes"


def dead_letter(channel, topology: Topology, body: bytes, props: pika.BasicProperties,
                error: InvalidMessage, queue: str) -> None:
    """Republish the message to the dead-letter exchange, confirmed, with the reason in headers
    and its own headers kept: those pika can encode again (it decodes a negative 64-bit header
    as an unsigned one it then cannot encode), else none of them, so that no header a sender
    chose can stop the daemon. A body over MAX_BODY_BYTES is kept cut to TRUNCATED_BYTES."""
    ours: dict[str, object] = {REASON_HEADER: error.reason.value,
                               DETAIL_HEADER: error.detail[:500], "x-pvsim-queue": queue}
    if len(body) > MAX_BODY_BYTES:
        ours[SIZE_HEADER] = len(body)
        body = body[:TRUNCATED_BYTES]
    theirs = props.headers if isinstance(props.headers, dict) else {}
    for headers in ({**theirs, **ours}, ours):
        dl_props = pika.BasicProperties(delivery_mode=2, content_type=props.content_type,
                                        message_id=props.message_id, timestamp=props.timestamp,
                                        headers=headers)
        try:
            channel.basic_publish(topology.dead_letter_exchange, queue, body, properties=dl_props)
            break
        except (pika.exceptions.UnsupportedAMQPFieldException, struct.error, TypeError,
                ValueError, OverflowError) as exc:  # raised while encoding, before any I/O
            if headers is ours:
                raise
            log.warning("the message's own headers cannot be sent again (%s): dead-lettering it "
                        "without them", type(exc).__name__)
    log.warning("dead-lettered a message: %s", error)
