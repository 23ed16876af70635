"""pvsim-meter: one reading per second per meter, published to RabbitMQ with confirms.

    pvsim-meter [--config FILE]

Two threads and a buffer between them:
- the ticker reads every configured meter at each whole second of wall time (RealClock: no drift,
  an hour is exactly 3,600 readings per meter) and appends the readings to a bounded buffer
  (meter.buffer_size; when full the oldest are dropped and counted);
- the publisher owns the broker link: it publishes what the buffer holds, in order (all it
  has, up to broker.batch_size readings per message), and removes readings only once RabbitMQ
  has confirmed them. When the broker is down or goes away it reconnects forever (capped
  exponential backoff with jitter), redeclares the topology and republishes what was not
  confirmed; pvsim-pv drops what it already wrote.
The last confirmed instant per meter goes to meter.state_file; after a restart or a crash the
ticker first produces the seconds that were missed (at most buffer_size readings): a reading is a
pure function of seed, meter id and instant, so a late reading is the very same reading.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pvsim import config as configmod
from pvsim.daemons import lifecycle, metrics
from pvsim.daemons.brokerlink import BrokerLink
from pvsim.daemons.buffer import Buffer
from pvsim.model.clock import Clock, RealClock
from pvsim.inputs.models import meter_models
from pvsim.model import shard
from pvsim.model.metermodel import read
from pvsim.model.reading import Reading
from pvsim.pipeline import broker
from pvsim.pipeline.csvsink import NotRegularFile, open_regular
from pvsim.pipeline.messages import encode_batches

log = logging.getLogger("pvsim.meter")

PROG = "pvsim-meter"
STATE_VERSION = 1


class _Stopped(Exception):
    """Raised out of the clock's sleep when the stop flag is set."""


class MeterState:
    """The last confirmed instant per meter, in a small JSON file replaced atomically.

    Read and written as every file pvsim writes (csvsink.open_regular): never through a link,
    never waiting on a FIFO. The temporary file is one this process created (O_EXCL; a stale
    one, or a link planted under its name, is removed first, never what a link points to)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._warned = False

    def load(self) -> dict[str, int]:
        try:
            with open(open_regular(self.path, os.O_RDONLY), encoding="utf-8") as f:
                doc = json.loads(f.read())
            last = doc["last_confirmed"]
            if doc.get("version") != STATE_VERSION or not isinstance(last, dict):
                raise ValueError("unknown layout")
            return {str(m): int(t) for m, t in last.items() if isinstance(t, int)}
        except FileNotFoundError:
            return {}
        except NotRegularFile:  # logged once
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring state file %s (%s): starting at the current second", self.path, exc)
            return {}

    def save(self, last: dict[str, int]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)  # a link itself, never its target
            with open(open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "w",
                      encoding="utf-8") as f:
                f.write(json.dumps({"version": STATE_VERSION, "last_confirmed": last}))
            os.replace(tmp, self.path)
        except NotRegularFile:  # logged once; as below, the meter works without it
            self._warned = True
            return
        except OSError as exc:
            if not self._warned:  # once: the meter works without it, it only cannot resume
                log.warning("cannot write state file %s: %s; after a restart the seconds missed "
                            "will not be produced", self.path, exc.strerror or exc)
                self._warned = True
            return
        self._warned = False


class MeterDaemon(broker.SessionHooks):
    def __init__(self, cfg: configmod.Config, life: lifecycle.Lifecycle,
                 clock: Clock | None = None, rabbit: broker.Broker | None = None) -> None:
        cfg = own_meters(cfg)
        self.cfg, self.lifecycle = cfg, life
        self.rabbit = rabbit or broker.RabbitMQ(cfg.broker)  # a test's stub broker, or RabbitMQ
        self.stop = life.stop
        self.tz = cfg.tz
        self.models = meter_models(cfg)
        self.registry = metrics.registry()
        self.metrics = metrics.MeterMetrics(self.registry)
        self.metrics.buffer_capacity.set(cfg.meter.buffer_size)
        self._produced = {m: self.metrics.produced.labels(m) for m in cfg.meter.id}
        self._published = {m: self.metrics.published.labels(m) for m in cfg.meter.id}
        self._power = {m: self.metrics.last_power.labels(m) for m in cfg.meter.id}
        self._clipped = {m: self.metrics.clipped.labels(m) for m in cfg.meter.id}
        self._confirmed_at = {m: self.metrics.last_confirmed.labels(m) for m in cfg.meter.id}
        self.buffer: Buffer[Reading] = Buffer(cfg.meter.buffer_size, on_drop=self._on_drop)
        self.topology = broker.Topology.from_config(cfg)
        self._shard: dict[str, int] = {}  # meter id: shard, as met
        self.state = MeterState(Path(cfg.meter.state_file))
        self.last_confirmed: dict[str, int] = {}
        self.published_total = 0
        # Seconds per meter the buffer holds: what a restart or a clock jump can still produce.
        self.catch_up = max(1, cfg.meter.buffer_size // len(self.models))
        self.clock = clock or RealClock(max_catch_up=self.catch_up, sleep=self._sleep,
                                        on_skip=self._on_skip)
        self.app = None
        self.link = BrokerLink(self.metrics.broker, "readings are buffered")
        self._ticker = lifecycle.Heartbeat()
        self._publisher_beat = lifecycle.Heartbeat()
        self._last_confirm = time.monotonic()
        self._state_saved = 0.0
        self._drop_logged = 0.0

    # --- the Service protocol -------------------------------------------------------------

    def threads(self) -> list[tuple[str, Callable[[], None]]]:
        return [("ticker", self.tick_loop), ("publisher", self.publish_loop)]

    def health(self) -> tuple[bool, str]:
        depth = len(self.buffer)
        if not self.link.connected:
            return False, f"not connected to RabbitMQ (reconnecting); {depth} readings buffered"
        if self.link.blocked:
            return False, f"RabbitMQ blocks publishing (memory or disk alarm); {depth} readings buffered"
        if self._ticker.age() > 5:
            return False, f"no reading taken for {self._ticker.age():.0f} s"
        if depth and time.monotonic() - self._last_confirm > 10:
            return False, f"no confirm from RabbitMQ for {time.monotonic() - self._last_confirm:.0f} s"
        return True, (f"publishing {len(self.models)} meter(s) at 1 Hz to "
                      f"{self.topology.exchange}; {depth} readings buffered")

    def alive(self) -> bool:
        return self._ticker.age() < lifecycle.STALL_SECONDS and (
            self._publisher_beat.age() < lifecycle.STALL_SECONDS or self.link.blocked)

    def status(self) -> str:
        published = self.published_total
        if not self.link.connected:
            return (f"RabbitMQ unreachable, reconnecting: {len(self.buffer)} readings buffered, "
                    f"{self.buffer.dropped} dropped")
        state = "blocked by RabbitMQ (resource alarm)" if self.link.blocked else "publishing"
        return f"{state}: {published} readings confirmed, {len(self.buffer)} buffered"

    def close(self) -> None:
        """After the workers stopped: the publisher thread has closed its own connection."""
        if self.last_confirmed:
            self.state.save(self.last_confirmed)

    # --- ticker thread ----------------------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        """The clock's sleep: waiting for the next second (or for a wall clock that stepped
        back) is the ticker being alive, not hung."""
        if self.stop.wait(seconds):
            raise _Stopped
        self._ticker.beat()

    def tick_loop(self) -> None:
        last = self.state.load()
        newest = max(last.values(), default=-1)
        first = True
        try:
            for instant in self.clock.ticks():
                if self.stop.is_set():
                    break
                if first:
                    first = False
                    self.backfill(instant, last)
                readings = list(read(self.models, (instant,), self.tz))
                if instant <= newest:  # the clock went back across a restart: never twice
                    readings = [r for r in readings if r.instant > last.get(r.meter_id, -1)]
                self._produce(readings)
        except _Stopped:
            pass
        finally:
            self.buffer.wake()

    def backfill(self, first_tick: int, last: dict[str, int]) -> None:
        """Produce the seconds missed since the last confirmed reading of a previous run."""
        cap = self.catch_up
        starts = {m.meter_id: last[m.meter_id] + 1 for m in self.models
                  if m.meter_id in last and last[m.meter_id] + 1 < first_tick}
        if not starts:
            return
        begin = min(starts.values())
        if first_tick - begin > cap:
            log.warning("the meter was stopped for %d s, more than the buffer holds: the first "
                        "%d s are lost", first_tick - begin, first_tick - begin - cap)
            begin = first_tick - cap
        log.info("resuming: producing the %d s missed since the last confirmed reading",
                 first_tick - begin)
        for chunk in range(begin, first_tick, 3600):
            instants = range(chunk, min(chunk + 3600, first_tick))
            readings = [r for r in read(self.models, instants, self.tz)
                        if r.meter_id in starts and r.instant >= starts[r.meter_id]]
            self._produce(readings)
            if self.stop.is_set():
                return

    def _produce(self, readings: Sequence[Reading]) -> None:
        self.buffer.put(readings)
        for r in readings:
            self._produced[r.meter_id].inc()
            if r.power_w >= self.cfg.meter.max_w:
                self._clipped[r.meter_id].inc()
        if readings:
            for r in readings[-len(self.models):]:
                self._power[r.meter_id].set(r.power_w)
        self.metrics.buffer.set(len(self.buffer))
        self._ticker.beat()

    def _on_skip(self, first: int, seconds: int) -> None:
        """The wall clock jumped further ahead than the buffer holds (the clock logged it)."""
        self.metrics.dropped.inc(seconds * len(self.models))

    def _on_drop(self, count: int) -> None:
        self.metrics.dropped.inc(count)
        now = time.monotonic()
        if now - self._drop_logged > 60:
            log.warning("buffer full (%d readings): dropping the oldest; %d dropped so far",
                        self.buffer.capacity, self.buffer.dropped)
            self._drop_logged = now

    # --- publisher thread: broker.SessionHooks ---------------------------------------------

    def publish_loop(self) -> None:
        """Publish the buffer for as long as the daemon runs, reconnecting whenever needed; a
        message RabbitMQ refuses (nack, unroutable) ends the session like a lost link, and is
        published again on the next connection. A declaration RabbitMQ refuses stops the
        daemon (exit 78)."""
        self.rabbit.run_sessions(self._publish_session, self,
                                 retry_on=(broker.SessionEnded, broker.PublishRefused))

    def should_stop(self) -> bool:
        self._publisher_beat.beat()
        return self.stop.is_set()

    def blocked(self, blocked: bool) -> None:
        self.link.on_blocked(blocked)

    def _publish_session(self, link: broker.Link) -> None:
        publisher = broker.Publisher(link, self.topology)
        self.link.up()
        self._last_confirm = time.monotonic()
        log.info("publishing to exchange %s (%s); %d readings buffered", self.topology.exchange,
                 _queues(self.topology), len(self.buffer))
        while not self.stop.is_set():
            end, items = self.buffer.peek(self.cfg.broker.batch_size, timeout=0.5)
            self._publisher_beat.beat()
            if items:
                self._publish(publisher, end, items)
            else:
                link.poll()  # heartbeats, alarms

    def session_ended(self, error: broker.BrokerError | None) -> None:
        if isinstance(error, broker.PublishRefused):
            self.metrics.publish_errors.inc()
            log.warning("RabbitMQ did not accept a message (%s); publishing it again", error)
        elif error is not None:
            log.warning("lost the connection to RabbitMQ: %s; buffering and reconnecting", error)
        self.link.down(error)

    def _publish(self, publisher: broker.Publisher, end: int, items: list[Reading]) -> None:
        """Publish a batch (a message per shard, several when one would be too large) and
        release it from the buffer once RabbitMQ has confirmed all of it."""
        for index, part in shard.by_shard(items, self.cfg.fleet.shards, self._shard):
            first = part[0]
            for n, body in enumerate(encode_batches(part, len(part),
                                                    max_power_w=self.cfg.limits.max_power_w)):
                began = time.monotonic()
                publisher.publish(body, message_id=f"{first.meter_id}/{first.instant}/{len(part)}/{n}",
                                  shard_index=index)
                self._last_confirm = now = time.monotonic()
                self.metrics.confirm_seconds.observe(now - began)
                self.metrics.messages.inc()
        self.buffer.release(end)
        self.published_total += len(items)
        for r in items:
            self._published[r.meter_id].inc()
            self.last_confirmed[r.meter_id] = r.instant
        for meter_id in {r.meter_id for r in items}:
            self._confirmed_at[meter_id].set(self.last_confirmed[meter_id])
        self.metrics.buffer.set(len(self.buffer))
        if now - self._state_saved >= 1.0:
            self.state.save(self.last_confirmed)
            self._state_saved = now


def _queues(topology: broker.Topology) -> str:
    names = topology.queues
    return f"queue {names[0]}" if len(names) == 1 else f"{len(names)} shard queues {names[0]}..."


def own_meters(cfg: configmod.Config) -> configmod.Config:
    """The config with the meters of this instance's shards only (fleet.instance of
    fleet.instances); the same config without a fleet."""
    fleet = cfg.fleet
    if fleet.instances == 1:
        return cfg
    shards = shard.owned(fleet.instance, fleet.instances, fleet.shards)
    ids = tuple(shard.meters_of(cfg.meter.id, shards, fleet.shards))
    if not ids:
        raise configmod.ConfigError(cfg.source, "fleet.instance", (
            f"instance {fleet.instance} of {fleet.instances} owns shards "
            f"{', '.join(shard.label(s) for s in shards)}, which hold none of the "
            f"{len(cfg.meter.id)} meters: use fewer instances or more meters"))
    log.info("instance %d of %d: %d of %d meters, in shards %s", fleet.instance,
             fleet.instances, len(ids), len(cfg.meter.id), ", ".join(shard.label(s) for s in shards))
    return dataclasses.replace(cfg, meter=dataclasses.replace(cfg.meter, id=ids))


def main(argv: Sequence[str] | None = None) -> int:
    return lifecycle.main(PROG, "Publish simulated meter readings, one per second per meter, to "
                          "RabbitMQ.", "meter.listen", MeterDaemon, argv)


if __name__ == "__main__":
    sys.exit(main())
