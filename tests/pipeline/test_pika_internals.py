"""The pika internals pvsim relies on on purpose, pinned: a pika upgrade that changes one fails
here, loudly, instead of quietly undoing what pvsim built on it.

- pvsim.pipeline.broker.headers replaces the module attribute `pika.data.decode_value` (so that
  no header a sender chose can stop a consumer); it works because `pika.data.decode_table` looks
  that name up at each call;
- pvsim.pipeline.broker.connection registers the resource-alarm callbacks on the connection
  underneath a BlockingConnection, its private `_impl`, because BlockingConnection defers them
  to process_data_events, which a thread waiting for a confirm never reaches.

After an upgrade: re-read the new code of each function named, adapt the module above, then
update the digests.
"""

from __future__ import annotations

import hashlib
import inspect
import struct

import pika
import pika.adapters.blocking_connection
import pika.connection
import pika.data

from pvsim.pipeline import broker  # noqa: F401  (installs the total header decoding)


def digest(function) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def test_the_pika_internals_we_rely_on_are_those_we_read():
    blocking = pika.adapters.blocking_connection.BlockingConnection
    original = inspect.getclosurevars(pika.data.decode_value).nonlocals["original"]
    pinned = {
        original: "7af144e51539c748",  # pika.data.decode_value, as pika ships it
        pika.data.decode_table: "365b750e2b9f2630",
        blocking.__init__: "8da560db501be485",
        blocking.add_on_connection_blocked_callback: "bb52830d35ddbd19",
        blocking.add_on_connection_unblocked_callback: "11c3e7a25263236b",
        pika.connection.Connection.add_on_connection_blocked_callback: "46fcb8cdecbbf608",
        pika.connection.Connection.add_on_connection_unblocked_callback: "9abf6a9b815a5ed1",
    }
    changed = [f"{function.__qualname__}: {digest(function)}" for function, pinned_digest
               in pinned.items() if digest(function) != pinned_digest]
    assert not changed, "pika changed under pvsim's use of its internals: " + ", ".join(changed)


def test_blocking_connection_keeps_the_connection_underneath_as_impl():
    source = inspect.getsource(pika.adapters.blocking_connection.BlockingConnection.__init__)
    assert "self._impl = self._create_connection(" in source


def test_a_header_pika_cannot_decode_is_decoded_raw_through_decode_table():
    """What the replacement is for, through the function pika's frame decoding calls: a
    timestamp past time_t, which pika's own decode_value cannot turn into a datetime."""
    assert getattr(pika.data.decode_value, "pvsim_total", False)
    field = b"\x01t" + b"T" + struct.pack(">Q", 2 ** 63)
    table = struct.pack(">I", len(field)) + field
    decoded, offset = pika.data.decode_table(table, 0)
    assert decoded == {"t": 2 ** 63} and offset == len(table)
