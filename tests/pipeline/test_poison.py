"""The crash record of redelivered messages (pvsim.pipeline.poison), on a real directory."""

from __future__ import annotations

import json
import logging
import os

import pytest

from pvsim.pipeline.messages import InvalidMessage, Reason
from pvsim.pipeline.poison import KEPT, POISON_CRASHES, PoisonGuard, digest


def restart(tmp_path, shard=None) -> PoisonGuard:
    """What the next process does: a fresh guard that reads the record back."""
    guard = PoisonGuard(tmp_path, shard)
    guard.recover()
    return guard


def test_a_message_handled_to_the_end_leaves_nothing_behind(tmp_path):
    guard = restart(tmp_path)
    key = guard.before(b"body")
    guard.after(key)
    assert json.loads((tmp_path / ".pvsim-poison").read_text()) == {"in_flight": None,
                                                                    "crashes": {}}
    assert restart(tmp_path).crashes == {}


def test_the_process_dying_twice_in_the_same_message_dead_letters_it(tmp_path, caplog):
    guard = restart(tmp_path)
    for crash in range(1, POISON_CRASHES + 1):
        guard.before(b"poison")  # ... and the process dies here
        with caplog.at_level(logging.WARNING):
            guard = restart(tmp_path)
        assert guard.crashes == {digest(b"poison"): crash}
        assert "stopped while handling message sha256:" in caplog.text
    guard.after(guard.before(b"innocent"))  # another message meanwhile changes nothing
    with pytest.raises(InvalidMessage) as err:
        guard.before(b"poison")
    assert err.value.reason == Reason.PROCESSING_ERROR
    assert f"stopped {POISON_CRASHES} times" in err.value.detail
    assert restart(tmp_path).crashes == {}  # forgotten once dead-lettered


def test_one_crash_then_a_clean_handling_forgets_it(tmp_path):
    restart(tmp_path).before(b"unlucky")  # a kill -9 lands in it once
    guard = restart(tmp_path)
    guard.after(guard.before(b"unlucky"))
    assert restart(tmp_path).crashes == {}


def test_shards_keep_records_of_their_own(tmp_path):
    restart(tmp_path, 3).before(b"m")
    assert restart(tmp_path, 4).crashes == {}
    assert restart(tmp_path, 3).crashes == {digest(b"m"): 1}
    assert (tmp_path / ".pvsim-s03.poison").exists()


def test_the_record_is_bounded(tmp_path):
    guard = restart(tmp_path)
    for i in range(KEPT + 10):
        guard.before(f"m{i}".encode())
        guard = restart(tmp_path)
    assert len(guard.crashes) == KEPT
    assert digest(f"m{KEPT + 9}".encode()) in guard.crashes  # the newest kept
    assert digest(b"m0") not in guard.crashes


@pytest.mark.parametrize("content", [b"", b"garbage", b"[" * 100_000, b'{"in_flight": 7}',
                                     b'{"in_flight": null, "crashes": {"x": 1}}'])
def test_a_record_that_is_not_ours_starts_afresh(tmp_path, caplog, content):
    (tmp_path / ".pvsim-poison").write_bytes(content)
    with caplog.at_level(logging.WARNING):
        guard = restart(tmp_path)
    assert guard.crashes == {} and guard.in_flight is None
    assert "not a crash record" in caplog.text
    guard.after(guard.before(b"m"))  # and it works from there


def test_a_link_is_never_followed(tmp_path, caplog):
    target = tmp_path / "precious"
    target.write_text("keep me")
    os.symlink(target, tmp_path / ".pvsim-poison")
    with caplog.at_level(logging.WARNING):
        guard = restart(tmp_path)
        guard.after(guard.before(b"m"))
    assert target.read_text() == "keep me"
    assert "cannot write" in caplog.text and caplog.text.count("cannot write") == 1
