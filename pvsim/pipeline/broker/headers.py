"""pika's decoding of message headers, made total (installed once, when the package is imported).

This replaces a module attribute of pika on purpose (`pika.data.decode_value`, which pika's
frame decoding looks up at each call): tests/pipeline/test_pika_internals.py fails loudly if an
upgrade of pika moves or renames it.
"""

from __future__ import annotations

import struct

import pika.data


def install() -> None:
    """Make pika's decoding of a message's headers total (installed once, at import).

    pika decodes every header before pvsim sees the message, and some values another client may
    publish, which RabbitMQ passes on, make that raise: a timestamp past time_t (a 'T' of 2**63:
    OverflowError), an array nested 3,000 deep (RecursionError); so would a float pika cannot
    turn into the int it makes of floats (NaN, infinity; RabbitMQ 3.11 refuses those itself).
    The error surfaces as a lost connection; the message is redelivered, drops the next
    connection too, for ever, and every message behind it waits. Such a value is decoded as its
    raw number (an array or table as its raw bytes) instead; pvsim reads no header but
    x-delivery-count, and dead-letters a message whose headers cannot be encoded again without
    them."""
    original = pika.data.decode_value
    if getattr(original, "pvsim_total", False):
        return

    def decode_value(encoded, offset):
        try:
            return original(encoded, offset)
        except (OverflowError, ValueError, OSError, RecursionError):
            kind = encoded[offset:offset + 1]
            if kind in _RAW_NUMBERS:
                code, size = _RAW_NUMBERS[kind]
                return struct.unpack_from(code, encoded, offset + 1)[0], offset + 1 + size
            if kind in (b"A", b"F"):
                length = struct.unpack_from(">I", encoded, offset + 1)[0]
                return bytes(encoded[offset + 5:offset + 5 + length]), offset + 5 + length
            raise

    decode_value.pvsim_total = True  # type: ignore[attr-defined]
    pika.data.decode_value = decode_value


_RAW_NUMBERS = {b"T": (">Q", 8), b"d": (">d", 8), b"f": (">f", 4)}
