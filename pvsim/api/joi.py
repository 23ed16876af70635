"""The JOI Energy smart-meter API, framework-free: `JoiApi(method, path, query, body)` -> (status,
JSON body). pvsim-pv's HTTP server calls it for every path but /metrics and /healthz.

Same URLs and JSON shapes as JOI's reference app (docs/reference/joi-energy-api.md), without
its defects:

    POST /readings/store                       {"smartMeterId", "electricityReadings": [{"time", "reading"}]}
    GET  /readings/read/<meter>                [{"reading": kW, "time": epoch}, ...] oldest first
    GET  /price-plans/compare-all/<meter>      {"pricePlanId", "pricePlanComparisons": [{plan: cost}], ...}
    GET  /price-plans/recommend/<meter>        [{plan: cost}, ...] cheapest first

Query parameters: `from`/`to` on the three GETs (epoch seconds, an ISO date or an ISO date-time;
[from, to) with an ISO *date* as `to` counting that whole day), `limit` on read (page size,
default 10000, at most 100000: the next page starts at `from` = last time + 1) and recommend,
`withPv=true` on recommend (rank by, and show, the cost of the net grid import with PV) and
`details=true` on recommend (an object with the energy balance instead of the bare list).

Posted readings enter the same pipeline as the meter's (`ingest`: PV value, CSV row, durable
when it returns); reads come from the CSVs through a ReadingStore (with fleet.shards above 1,
one per shard: any meter's, whichever pvsim-pv writes its shard). Client errors are 4xx with a
problem body {"title", "status", "detail"}; an unknown meter (no account, no reading) is 404.
No client may write a future reading for a meter pvsim-meter reads (400), any reading more than
MAX_FUTURE_DAYS ahead (400), add meters beyond pv.max_meters or days with readings beyond
pv.max_days (403: both checked and taken atomically), or touch more than MAX_POST_DAYS days in
one POST (413); so what one client can create in all is bounded, not only per POST. Readings of
a long-past day are accepted and kept (retention counts from when they were posted). Who may call at
all (Host names, the token for writes) is the HTTP endpoint's business (daemons.httpaccess).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pvsim.api.problem import problem
from pvsim.api.request import (_WHOLE, ClientError, _check_text, _flag, _json_body, _limit, _one,
                               _whole)
from pvsim.config import Config
from pvsim.model import energy
from pvsim.model.clock import local_midnight
from pvsim.model.energy import EnergyBalance
from pvsim.model.plans import PlanCost, Pricing, joi_list, rank, recommend
from pvsim.model.reading import Reading
from pvsim.pipeline.csvformat import Row, all_day_files
from pvsim.pipeline.csvsink import NotRegularFile, SinkError
from pvsim.pipeline.messages import InvalidMessage, MAX_READINGS, validate
from pvsim.pipeline.pvservice import Outcome
from pvsim.store.shardedstore import Store, store_for

log = logging.getLogger(__name__)

Ingest = Callable[[list[Reading]], Outcome]
# An endpoint: (query, body, path arguments...) -> (status, JSON document).
Handler = Callable[..., tuple[int, object]]

READ_PAGE = 10_000
READ_PAGE_MAX = 100_000
MAX_POSTED = 100_000
MAX_INSTANT = 32_503_680_000  # 3000-01-01: later windows are client mistakes
MAX_POST_DAYS = 366           # local days one POST may write: a year of history at once
FUTURE_SLACK_SECONDS = 2      # a live meter's reading may be this far ahead (clock skew)
MAX_FUTURE_DAYS = 366         # any other meter's reading at most this far ahead of now
KWH_DECIMALS = 6


class JoiApi:
    def __init__(self, cfg: Config, output_dir: Path, ingest: Ingest, *,
                 store: Store | None = None,
                 now: Callable[[], float] = time.time) -> None:
        self.cfg, self.tz, self.ingest, self.now = cfg, cfg.tz, ingest, now
        self.output_dir = Path(output_dir)
        # pvsim-meter's meters: their readings come as the seconds pass, never ahead of them.
        self.live_meters = frozenset(cfg.meter.id)
        self._known_meters: set[str] | None = None  # every meter with readings, loaded once
        self._known_days: set[dt.date] = set()      # local days with files, as last listed
        self._admit = threading.Lock()  # held by a POST that adds a meter or a day, to the end
        self.pricing = Pricing.from_config(cfg.pricing)
        # The journal must hold every row the sink may not have flushed yet (see readingstore).
        journal = max(20_000, 2 * cfg.output.sync_rows + 2 * MAX_READINGS)
        self.store = store or store_for(output_dir, cfg, journal_rows=journal)
        self.routes: dict[tuple[str, ...], tuple[tuple[str, ...], Handler]] = {
            ("readings", "store"): (("POST",), self._store),
            ("readings", "read"): (("GET", "HEAD"), self._read),
            ("price-plans", "compare-all"): (("GET", "HEAD"), self._compare_all),
            ("price-plans", "recommend"): (("GET", "HEAD"), self._recommend),
        }

    def on_row(self, row: Row, nbytes: int) -> None:
        """PvService listener: keeps the store's day aggregates current without rereading."""
        self.store.on_row(row, nbytes)
        if self._known_meters is not None:
            self._known_meters.add(row.meter_id)

    def __call__(self, method: str, path: str, query: dict[str, list[str]],
                 body: bytes) -> tuple[int, object]:
        try:
            return self._dispatch(method.upper(), path, query or {}, body or b"")
        except ClientError as exc:
            return exc.status, problem(exc.status, exc.detail, **exc.extra)
        except NotRegularFile as exc:  # a day's file is a link, a directory...: that day's fault
            return 503, problem(503, f"the readings could not be read: {exc}")

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]],
                  body: bytes) -> tuple[int, object]:
        path, _, raw_query = path.partition("?")
        if raw_query:
            query = {**urllib.parse.parse_qs(raw_query, keep_blank_values=True), **query}
        segments = path.strip("/").split("/")
        key, args = tuple(segments[:2]), [urllib.parse.unquote(s) for s in segments[2:]]
        route = self.routes.get(key)
        wants_meter = key != ("readings", "store")
        if route is None or len(args) != (1 if wants_meter else 0) or (wants_meter and not args[0]):
            raise ClientError(404, f"no resource at {path}; the JOI Energy API has POST "
                                   "/readings/store and GET /readings/read/<meter>, "
                                   "/price-plans/compare-all/<meter>, /price-plans/recommend/<meter>")
        methods, handler = route
        if method not in methods:
            raise ClientError(405, f"{method} is not allowed on {path}; use {methods[0]}",
                              allow=list(methods))
        return handler(query, body, *args)

    # -- endpoints --

    def _store(self, query: dict, body: bytes) -> tuple[int, object]:
        doc = _json_body(body)
        _check_text(doc)  # before anything is stored: the echo of a stored request cannot fail
        meter_id = doc.get("smartMeterId")
        items = doc.get("electricityReadings")
        if meter_id is None:
            raise ClientError(400, "smartMeterId is missing")
        if not isinstance(meter_id, str):
            raise ClientError(400, "smartMeterId must be a string")
        if items is None:
            raise ClientError(400, "electricityReadings is missing")
        if not isinstance(items, list):
            raise ClientError(400, "electricityReadings must be a list of {\"time\", \"reading\"}")
        if len(items) > MAX_POSTED:
            raise ClientError(413, f"{len(items)} readings in one request; send at most {MAX_POSTED}")
        readings = [self._reading(meter_id, item, i) for i, item in enumerate(items)]
        self._check_limits(meter_id, readings)
        if readings:
            try:
                with self._admitted(meter_id, {r.timestamp.date() for r in readings}):
                    outcome = self.ingest(readings)
            except SinkError as exc:  # the sink cannot write: not the client's fault
                if not isinstance(exc, NotRegularFile):  # that one is logged once, where found
                    log.error("cannot store posted readings: %s", exc)
                return 503, problem(503, f"the readings could not be stored: {exc}")
            log.info("stored %d posted readings of %s (%d duplicates dropped)",
                     outcome.written, meter_id, outcome.duplicates)
        return 200, doc

    def _check_limits(self, meter_id: str, readings: list[Reading]) -> None:
        """What no single client may do to the store: write a live meter's future (its real
        reading would then be dropped as a duplicate when its second comes), add meters without
        end (each costs memory and metric series), or scatter one request over years of files."""
        if not readings:
            return
        newest = max(r.instant for r in readings)
        if meter_id in self.live_meters and newest > self.now() + FUTURE_SLACK_SECONDS:
            raise ClientError(400, f"{meter_id} is a meter pvsim-meter reads (meter.id): its "
                                   f"readings cannot be in the future (time {newest})")
        if newest > self.now() + MAX_FUTURE_DAYS * 86_400:
            raise ClientError(400, f"time {newest} is more than {MAX_FUTURE_DAYS} days ahead; "
                                   f"a simulated future may reach at most that far")
        days = {r.timestamp.date() for r in readings}
        if len(days) > MAX_POST_DAYS:
            raise ClientError(413, f"the readings span {len(days)} local days; send at most "
                                   f"{MAX_POST_DAYS} days per request")

    @contextmanager
    def _admitted(self, meter_id: str, days: set[dt.date]) -> Iterator[None]:
        """Check the totals no client may push past (pv.max_meters, pv.max_days) and take them
        in one step: a POST that brings a new meter or a new day into being holds `_admit`
        until its readings are stored, so concurrent POSTs cannot each see room for one more
        (12 at once stored 6 meters under a cap of 3). Other POSTs never wait for it."""
        if meter_id in self._meters() and days <= self._known_days:
            yield
            return
        with self._admit:
            known = self._meters()
            if meter_id not in known and len(known) >= self.cfg.pv.max_meters:
                raise ClientError(403, f"pvsim-pv keeps at most {self.cfg.pv.max_meters} meters "
                                       f"(pv.max_meters); {meter_id!r} would be one more")
            if not days <= self._known_days:
                self._known_days = {day for day, _, _ in all_day_files(self.output_dir)}
                new = days - self._known_days
                if new and len(self._known_days) + len(new) > self.cfg.pv.max_days:
                    raise ClientError(403, (
                        f"pvsim-pv keeps readings of at most {self.cfg.pv.max_days} local days "
                        f"(pv.max_days; {len(self._known_days)} have some); these readings "
                        f"would add {len(new)} more, such as {min(new)}"))
            yield
            known.add(meter_id)  # a fleet publishes them: no row of it may have come back yet
            self._known_days |= days

    def recount(self) -> None:
        """Retention removed days: count meters and days from the files again when next needed
        (a meter whose every reading went no longer counts towards pv.max_meters)."""
        self._known_meters, self._known_days = None, set()

    def _meters(self) -> set[str]:
        if self._known_meters is None:
            self._known_meters = set(self.store.meters())
        return self._known_meters

    def _reading(self, meter_id: str, item: object, i: int) -> Reading:
        where = f"electricityReadings[{i}]"
        if not isinstance(item, dict):
            raise ClientError(400, f"{where} must be an object {{\"time\", \"reading\"}}")
        for name in ("time", "reading"):
            if name not in item:
                raise ClientError(400, f"{where}.{name} is missing")
        time, kw = item["time"], item["reading"]
        if isinstance(time, bool) or not isinstance(time, int):
            raise ClientError(400, f"{where}.time must be whole epoch seconds, got {time!r:.40}")
        if isinstance(kw, bool) or not isinstance(kw, (int, float)):
            raise ClientError(400, f"{where}.reading must be a number of kW, got {kw!r:.40}")
        if not 0 <= time <= MAX_INSTANT:
            raise ClientError(400, f"{where}.time {time} is not an epoch second from 1970 to 2999")
        try:
            watts = float(kw) * 1000.0
        except OverflowError:  # a whole number too large for a float (400 digits)
            raise ClientError(400, f"{where}.reading is not a number of kW a float can hold, "
                                   f"got {str(kw)[:40]}...") from None
        reading = Reading(meter_id, time, watts, self.tz)
        try:
            validate(reading, where, self.cfg.limits.max_power_w)
        except InvalidMessage as exc:
            raise ClientError(400, f"{exc.detail} (reading {kw!r} kW)") from None
        return reading

    def _read(self, query: dict, body: bytes, meter_id: str) -> tuple[int, object]:
        start, end = self._window(query)
        limit = _limit(query, default=READ_PAGE, maximum=READ_PAGE_MAX)
        self._known(meter_id)
        rows = self.store.readings(meter_id, start, end, limit)
        return 200, [{"reading": kw, "time": t} for t, kw in rows]

    def _compare_all(self, query: dict, body: bytes, meter_id: str) -> tuple[int, object]:
        start, end = self._window(query)
        _flag(query, "withPv")  # accepted for symmetry; compare-all always carries both
        self._known(meter_id)
        costs, balance = self._costs(meter_id, start, end)
        return 200, {
            "pricePlanId": self.pricing.plan_of(meter_id),
            "pricePlanComparisons": joi_list(rank(costs)),
            "pricePlanComparisonsWithPv": joi_list(rank(costs, with_pv=True), with_pv=True),
            "energyBalance": _balance(balance),
            "feedInTariff": self.pricing.feed_in_tariff,
            "pricePlans": [c.to_dict(camel_case=True) for c in costs],
            "window": {"from": start, "to": end},
        }

    def _recommend(self, query: dict, body: bytes, meter_id: str) -> tuple[int, object]:
        start, end = self._window(query)
        limit = _limit(query, default=None)
        with_pv, details = _flag(query, "withPv"), _flag(query, "details")
        self._known(meter_id)
        costs, balance = self._costs(meter_id, start, end)
        chosen = joi_list(recommend(costs, limit, with_pv=with_pv), with_pv=with_pv)
        if not details:
            return 200, chosen
        return 200, {"pricePlanId": self.pricing.plan_of(meter_id), "withPv": with_pv,
                     "recommendations": chosen, "energyBalance": _balance(balance),
                     "feedInTariff": self.pricing.feed_in_tariff,
                     "window": {"from": start, "to": end}}

    # -- helpers --

    def _known(self, meter_id: str) -> None:
        if self.pricing.plan_of(meter_id) is None and not self.store.has_meter(meter_id):
            raise ClientError(404, f"unknown meter {meter_id!r}: no account and no readings")

    def _costs(self, meter_id: str, start: int | None,
               end: int | None) -> tuple[list[PlanCost], EnergyBalance]:
        days = self.store.energy_by_day(meter_id, start, end)
        return self.pricing.compare(days), energy.total(days.values())

    def _window(self, query: dict) -> tuple[int | None, int | None]:
        start = self._instant(_one(query, "from"), "from", inclusive_day_end=False)
        end = self._instant(_one(query, "to"), "to", inclusive_day_end=True)
        if start is not None and end is not None and start > end:
            raise ClientError(400, f"from ({start}) is after to ({end})")
        return start, end

    def _instant(self, text: str | None, name: str, *, inclusive_day_end: bool) -> int | None:
        """Epoch seconds from an epoch, an ISO date (local midnight; for `to`, the midnight
        ending that day) or an ISO date-time (naive: local time)."""
        if text is None:
            return None
        text = text.strip()
        if _WHOLE.match(text):
            value = _whole(text, name)
        else:
            try:
                if len(text) == 10:
                    day = dt.date.fromisoformat(text)
                    value = local_midnight(day + dt.timedelta(days=1 if inclusive_day_end else 0), self.tz)
                else:
                    moment = dt.datetime.fromisoformat(text)
                    if moment.tzinfo is None:
                        moment = moment.replace(tzinfo=self.tz)
                    value = math.floor(moment.timestamp())
            except (ValueError, OverflowError):
                raise ClientError(400, f"{name} must be epoch seconds, an ISO date (2020-11-29) or "
                                       f"an ISO date-time, got {text[:40]!r}") from None
        if not 0 <= value <= MAX_INSTANT:
            raise ClientError(400, f"{name} {text[:40]!r} is outside 1970-2999")
        return value


def _balance(b: EnergyBalance) -> dict:
    r = lambda v: round(v, KWH_DECIMALS) + 0.0  # noqa: E731
    return {"consumedKwh": r(b.consumed_kwh), "pvKwh": r(b.pv_kwh),
            "gridImportKwh": r(b.import_kwh), "gridExportKwh": r(b.export_kwh),
            "selfConsumedKwh": r(b.self_consumed_kwh), "readings": b.readings,
            "firstReading": b.first, "lastReading": b.last}
