"""The transports of a one-shot run, against the real RabbitMQ: a message the service rejects
ends the run at once (it never waits for rows that cannot come), and through RabbitMQ the reject
lands in the run's own dead-letter queue, deleted with the run, never in the daemons'."""

from __future__ import annotations

import threading
from zoneinfo import ZoneInfo

import pytest

from pvsim.model.pvcurve import PvCurve
from pvsim.model.reading import Reading
from pvsim.pipeline.csvsink import CsvSink
from pvsim.pipeline.messages import encode
from pvsim.pipeline.pvservice import PvService
from pvsim.pipeline.transport import InProcess, MessageRejected, RabbitRun

TZ = ZoneInfo("Europe/Madrid")
T0 = 1_782_043_200


def bodies_with_a_bad_one() -> list[bytes]:
    good = [encode([Reading("m", t, 1000.0, TZ)]) for t in (T0, T0 + 1)]
    return [good[0], b'{"v": 1, "readings": "not a list"}', good[1]]


def test_in_process_a_rejected_message_ends_the_run(tmp_path):
    service = PvService(PvCurve(TZ), CsvSink(tmp_path), TZ)
    with pytest.raises(MessageRejected, match="missing_field"):
        InProcess().deliver(bodies_with_a_bad_one(), service, expected=2)
    assert service.rows_total == 1  # what came before the reject is written


def test_through_rabbitmq_a_rejected_message_ends_the_run_at_once(pvsim_config, tmp_path):
    cfg = pvsim_config.load().broker
    transport = RabbitRun(cfg)
    service = PvService(PvCurve(TZ), CsvSink(tmp_path), TZ)
    done = threading.Event()
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            transport.deliver(bodies_with_a_bad_one(), service, expected=2)
        except BaseException as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=deliver, daemon=True).start()
    assert done.wait(60), "the run waited for rows that could not come"
    assert len(errors) == 1 and isinstance(errors[0], MessageRejected), errors
    assert "missing_field" in str(errors[0])
    channel = pvsim_config.channel()
    daemons_dlq = channel.queue_declare(cfg.dead_letter_queue, passive=True).method.message_count
    assert daemons_dlq == 0  # the daemons' dead-letter queue never sees a run's reject
    for queue in (transport.topology.queue, transport.topology.dead_letter_queue):
        with pytest.raises(Exception, match="NOT_FOUND"):  # the run's queues are gone
            pvsim_config.channel().queue_declare(queue, passive=True)
    assert transport.topology.dead_letter_queue.startswith(cfg.queue + ".run.")


def many_bodies(count: int) -> list[bytes]:
    return [encode([Reading("m", t, 1000.0, TZ)])
            for t in range(T0, T0 + count)]


def test_in_process_a_stop_request_ends_the_run_between_messages(tmp_path):
    service = PvService(PvCurve(TZ), CsvSink(tmp_path), TZ)
    with pytest.raises(KeyboardInterrupt):
        InProcess().deliver(many_bodies(10), service, expected=10,
                            should_stop=lambda: service.rows_total >= 4)
    assert service.rows_total == 4  # whole messages, synced


def test_through_rabbitmq_a_stop_request_ends_the_run_and_removes_its_queues(pvsim_config, tmp_path):
    """A worker asked to stop (SIGTERM) leaves the consume loop at its next turn, then cleans up
    as at the end of a run: the publisher stops, the run's queues are deleted."""
    transport = RabbitRun(pvsim_config.load().broker)
    service = PvService(PvCurve(TZ), CsvSink(tmp_path), TZ)
    with pytest.raises(KeyboardInterrupt):
        transport.deliver(iter(many_bodies(20_000)), service, expected=20_000,
                          should_stop=lambda: service.rows_total >= 100)
    assert 100 <= service.rows_total < 20_000
    for queue in (transport.topology.queue, transport.topology.dead_letter_queue):
        with pytest.raises(Exception, match="NOT_FOUND"):
            pvsim_config.channel().queue_declare(queue, passive=True)


def test_through_rabbitmq_an_exchange_declared_otherwise_ends_the_run_with_one_clear_error(
        pvsim_config, tmp_path):
    """The daemons' exchange exists as another type: RabbitMQ refuses the run's declaration, an
    operator's error that the run reports (exit 78) instead of retrying."""
    from pvsim.pipeline import broker

    cfg = pvsim_config.load().broker
    link = broker.connect(cfg)
    try:
        link.channel().exchange_declare(cfg.exchange, "fanout", durable=True)
    finally:
        link.close()
    service = PvService(PvCurve(TZ), CsvSink(tmp_path), TZ)
    with pytest.raises(broker.DeclarationMismatch) as err:
        RabbitRun(cfg).deliver(many_bodies(3), service, expected=3)
    assert f"refused to declare the exchange {cfg.exchange}: inequivalent arg 'type'" in str(err.value)
    assert err.value.exit_code == 78 and service.rows_total == 0
