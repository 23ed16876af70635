"""The YAML configuration, loaded into frozen dataclasses.

Every mistake a user can make in the file (malformed YAML, an unknown key, a wrong type, a value
out of range, a missing file) becomes one ConfigError whose message names the file, the key and
the problem; the entry points turn it into one line on stderr and exit code 78 (os.EX_CONFIG), which
the systemd units list in RestartPreventExitStatus so a broken config does not restart-loop.

The schema is the dataclasses below: their field types, defaults and `metadata` (ranges, choices,
help) are the single source of truth; config/pvsim.yaml documents the same keys for humans.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import ipaddress
import math
import os
import re
import types
import typing
import unicodedata
import urllib.parse
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from yaml.events import (AliasEvent, CollectionEndEvent, CollectionStartEvent,
                         MappingStartEvent, ScalarEvent)
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

DEFAULT_PATH = Path("/etc/pvsim/pvsim.yaml")
# A meter id, everywhere (config, messages, the API): nothing a CSV cell must quote or a
# spreadsheet could take for a formula (OWASP's triggers are = + - @ first: so a letter or a
# digit comes first).
METER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
METER_ID_RULE = "1-64 characters from A-Z, a-z, 0-9 and . _ : -, the first a letter or a digit"
# What the loader accepts at most, whatever a file holds, so that no file can make a program
# spend minutes or gigabytes before its one line: a config is a few KiB, and 100,000 meter ids
# of the longest kind with an account each (`pricing.accounts`) are 15 MiB and about 300,000
# values, which load in a few seconds. Aliases count as often as they are used (an alias bomb
# of 442 bytes expands to 9^10 values), nesting as deep as it goes once they are expanded.
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_VALUES = 1_000_000
MAX_DEPTH = 32             # the schema needs 4 (pricing.plans[0].peak_multipliers.monday)
MAX_INTEGER_CHARS = 40     # a config's integers are far shorter; Python refuses 4,300 digits
SHOWN_CHARS = 60           # of a value quoted in an error line
MAX_ERROR_CHARS = 1000     # an error line, whatever it quotes
MAX_METER_COUNT = 10_000_000
MAX_STRING_CHARS = 4096    # a path (PATH_MAX), a URL, a name
MAX_AMQP_NAME_BYTES = 200  # AMQP's 255, less what pvsim appends (".run.<id>.dead", ".s001")
_AMQP_NAMES = {"broker.exchange", "broker.queue", "broker.dead_letter_exchange",
               "broker.dead_letter_queue"}
_HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class ConfigError(Exception):
    """A problem with the configuration, phrased for the person who edits the file."""

    exit_code = os.EX_CONFIG  # 78: the units do not restart on it (RestartPreventExitStatus)

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}" if key else source
        # One line, always, and a short one: whatever a file holds, it cannot break the message
        # across lines nor make it long (the values quoted are cut already; this is the backstop).
        super().__init__(one_line(f"{where}: {problem}"))


class UsageParser(argparse.ArgumentParser):
    """argparse for every entry point, with a usage error as one line, exit 2, as every pvsim
    error (the usage is in --help), whatever the flags hold: their values are cut and never
    break the line."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, one_line(f"{self.prog}: {message} (see {self.prog} --help)",
                              USAGE_ERROR_CHARS) + "\n")


USAGE_ERROR_CHARS = 300


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict:
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


@dataclass(frozen=True)
class BrokerConfig:
    url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    # A cluster: its nodes' URLs, tried in turn (the first that answers is used, and the next
    # ones when it fails); instead of url, not beside it.
    urls: tuple[str, ...] = field(default=(), metadata={"empty_ok": True})
    exchange: str = "pvsim"
    queue: str = "pvsim.readings"
    dead_letter_exchange: str = "pvsim.dead"
    dead_letter_queue: str = "pvsim.readings.dead"
    # The dead-letter queue keeps at most this many messages, dropping the oldest (0: no limit).
    dead_letter_max_length: int = field(default=100_000, metadata=_range(0, 100_000_000))
    # ... and at most this many bytes of message bodies, dropping the oldest (0: no limit); a
    # body over the 1 MiB a message may have is kept cut to its first 64 KiB.
    dead_letter_max_bytes: int = field(default=256 * 1024 * 1024, metadata=_range(0, 1 << 40))
    # Attempts before a one-shot run gives up; the daemons retry forever.
    connect_attempts: int = field(default=5, metadata=_range(1, 1000))
    retry_initial_seconds: float = field(default=0.5, metadata=_range(0.01, 3600))
    retry_max_seconds: float = field(default=30.0, metadata=_range(0.1, 3600))
    heartbeat_seconds: int = field(default=30, metadata=_range(0, 3600))
    prefetch: int = field(default=1000, metadata=_range(1, 65535))
    # Readings per AMQP message in the accelerated run (the daemons send what they have).
    batch_size: int = field(default=500, metadata=_range(1, 10000))
    # classic: one queue on one node (the default with one shard); quorum: replicated over a
    # cluster's nodes, with single active consumer (the only type with fleet.shards above 1).
    queue_type: Literal["classic", "quorum"] | None = None
    # Quorum queues: a message delivered this many times without being acknowledged (its
    # consumer died each time) goes to the dead-letter queue rather than round again.
    delivery_limit: int = field(default=20, metadata=_range(1, 10_000))


@dataclass(frozen=True)
class MeterConfig:
    id: tuple[str, ...] = ("smart-meter-0",)
    # Instead of id: this many meters, named meter-000001, meter-000002, ... (a fleet).
    count: int = field(default=0, metadata=_range(0, MAX_METER_COUNT))
    seed: int = 42
    # building: a commercial building's day; uniform: any value in [0, max_w] (the challenge's
    # original); slp: a BDEW standard load profile (profile, annual_kwh, holidays below);
    # series: a recorded consumption series (series_file, series_unit below), replayed.
    model: Literal["building", "uniform", "slp", "series"] = "building"
    # The most the meter reads, in W (the challenge's meter: 9000); a model's value above it is
    # clipped, counted (pvsim_meter_readings_clipped_total) and reported by pvsim-run's summary.
    # Readings stored through the JOI API are real data and are not clipped.
    max_w: float = field(default=9000.0, metadata=_range(0.0, 1e9, lo_open=True))
    # slp: H0 household (dynamised), G0-G6 commercial, L0-L2 agricultural.
    profile: Literal["H0", "G0", "G1", "G2", "G3", "G4", "G5", "G6", "L0", "L1", "L2"] = "H0"
    # slp: the consumption of each calendar year, kWh (3,500: a German household of three).
    annual_kwh: float = field(default=3500.0, metadata=_range(0.0, 1e9, lo_open=True))
    # slp: public holidays (YYYY-MM-DD), which take the Sunday profile as Sundays do.
    holidays: tuple[dt.date, ...] = field(default=(), metadata={"empty_ok": True})
    # series: a CSV of timestamp,value rows (one year or more; a year is reused for any year).
    series_file: str = ""
    # series: the value column's unit: w or kw (power at the stamp), kwh (the energy of the
    # interval from the stamp to the next row's).
    series_unit: Literal["w", "kw", "kwh"] = "kw"
    listen: str = "127.0.0.1:9761"
    # Readings kept while RabbitMQ is unreachable; the oldest are dropped (and counted) past it.
    buffer_size: int = field(default=86400, metadata=_range(1, 10_000_000))
    # pvsim-meter records here the last instant RabbitMQ confirmed per meter; after a restart it
    # produces the seconds it missed (at most buffer_size readings) before the current ones.
    state_file: str = "/var/lib/pvsim/pvsim-meter.state"


@dataclass(frozen=True)
class PvConfig:
    # chart: the challenge's reference curve, every day alike; clearsky: the sun over the site
    # below through the array below; weather: a typical year's weather file through the array;
    # series: a recorded PV output series (PVGIS hourly CSV, or timestamp,kw) as it is.
    model: Literal["chart", "clearsky", "weather", "series"] = "chart"
    # chart: the curve's peak (kW AC); clearsky and weather: the array's DC nameplate (kWp).
    peak_kw: float = field(default=3.25, metadata=_range(0.0, 1_000_000.0, lo_open=True))
    # The site (clearsky; weather takes what its file's LOCATION line says unless set here).
    latitude: float | None = field(default=None, metadata=_range(-90.0, 90.0))
    longitude: float | None = field(default=None, metadata=_range(-180.0, 180.0))
    altitude_m: float | None = field(default=None, metadata=_range(-500.0, 9000.0))
    # The array: 0 flat, 90 vertical; facing 180 south (90 east, 270 west, 0 north).
    tilt_deg: float = field(default=30.0, metadata=_range(0.0, 90.0))
    azimuth_deg: float = field(default=180.0, metadata=_range(0.0, 360.0))
    # System losses (wiring, soiling, mismatch, availability) as a share of DC power: PVWatts'.
    losses: float = field(default=0.14, metadata=_range(0.0, 0.99))
    # The inverter's AC rating (kW); unset: sized to peak_kw.
    inverter_kw: float | None = field(default=None, metadata=_range(0.0, 1_000_000.0, lo_open=True))
    albedo: float = field(default=0.2, metadata=_range(0.0, 1.0))
    # clearsky: the Linke turbidity of the air, one value or twelve (January to December); 3 is
    # a rural mid-latitude average. scripts/pvlib-reference --linke LAT LON prints a site's.
    linke_turbidity: tuple[float, ...] = field(default=(3.0,), metadata=_range(1.0, 10.0))
    # clearsky: the air temperature (C) the cells' temperature derate starts from.
    temperature_c: float = field(default=20.0, metadata=_range(-50.0, 60.0))
    weather_file: str = ""   # weather: an EPW file
    series_file: str = ""    # series: a PVGIS hourly CSV or a timestamp,kw CSV
    # Multiplicative cloud noise: 0 reproduces the reference curve exactly, 0.3 is a cloudy day.
    noise: float = field(default=0.0, metadata=_range(0.0, 1.0))
    seed: int = 7
    listen: str = "127.0.0.1:9762"
    # Distinct meters the JOI API takes readings for; a POST for one more is refused (403).
    max_meters: int = field(default=10_000, metadata=_range(1, 1_000_000))
    # Local days with readings (files) POSTs may bring into being, in all: a POST for one more is
    # refused (403); the meters' own readings never are. Retention's 400 days, a year of
    # simulated future and some history.
    max_days: int = field(default=1500, metadata=_range(1, 1_000_000))


@dataclass(frozen=True)
class LimitsConfig:
    # Sanity limit for any power pvsim accepts (messages, POSTed and recorded readings), in W: a
    # value beyond it is an error, never clipped. 10 MW: well above any building on one meter.
    max_power_w: float = field(default=10_000_000.0, metadata=_range(0.0, 1e12, lo_open=True))


@dataclass(frozen=True)
class ApiConfig:
    # Host names (as in the Host header, without the port) the HTTP endpoints answer, besides IP
    # addresses and localhost: list the names clients use when the port is open beyond loopback.
    # Any other name is refused (421), so a web page cannot reach the API by DNS rebinding.
    allowed_hosts: tuple[str, ...] = ()
    # A file (mode 0640 or stricter) holding a token that POST /readings/store must carry as
    # "Authorization: Bearer TOKEN". Empty: no token (fine while pv.listen is on loopback).
    token_file: str = ""


@dataclass(frozen=True)
class OutputConfig:
    directory: str = "/var/lib/pvsim"
    # Rows written between two fsyncs in the daemon; a message is acked only after its fsync.
    sync_rows: int = field(default=1000, metadata=_range(1, 1_000_000))
    # Below this much free space in `directory`, pvsim-pv's /healthz answers 503, well before
    # the disk is full (pvsim_pv_output_free_bytes shows the figure).
    min_free_mb: int = field(default=200, metadata=_range(0, 10_000_000))
    # pvsim-pv removes the daily CSVs (and their aggregates) older than this many days, at start
    # and hourly; 0 keeps them all. 400: a year for the annual figures, and a month to spare.
    retention_days: int = field(default=400, metadata=_range(0, 100_000))


@dataclass(frozen=True)
class PricePlanConfig:
    id: str
    supplier: str
    unit_rate: float = field(metadata=_range(0.0))
    peak_multipliers: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PricingConfig:
    plans: tuple[PricePlanConfig, ...] = (
        PricePlanConfig("price-plan-0", "Dr Evil's Dark Energy", 10.0),
        PricePlanConfig("price-plan-1", "The Green Eco", 2.0),
        PricePlanConfig("price-plan-2", "Power for Everyone", 1.0),
    )
    accounts: dict[str, str] = field(default_factory=lambda: {
        "smart-meter-0": "price-plan-0",
        "smart-meter-1": "price-plan-1",
        "smart-meter-2": "price-plan-0",
        "smart-meter-3": "price-plan-2",
        "smart-meter-4": "price-plan-1",
    })
    # Paid per kWh exported to the grid (same currency unit as the unit rates).
    feed_in_tariff: float = field(default=0.0, metadata=_range(0.0))
    # Readings further apart than this are not bridged when integrating energy.
    max_gap_seconds: float = field(default=3600.0, metadata=_range(0.0, lo_open=True))
    # The unit of every price: unit rates, the feed-in tariff and the costs shown with them. An
    # ISO 4217 code (EUR, GBP, USD) or one currency sign.
    currency: str = "EUR"


@dataclass(frozen=True)
class FleetConfig:
    # Logical shards the meters are spread over (crc32 of the meter id): one quorum queue and
    # one set of daily files per shard, each written by one pvsim-pv at a time. 1: no fleet.
    # Fixed for the life of an output directory: it decides which file holds which meter.
    shards: int = field(default=1, metadata=_range(1, 1000))
    # pvsim-meter instances sharing the meters, and which one this is (0-based): instance k
    # simulates the meters of shards k, k + instances, k + 2 * instances, ...
    instances: int = field(default=1, metadata=_range(1, 1000))
    instance: int = field(default=0, metadata=_range(0, 999))


@dataclass(frozen=True)
class Config:
    timezone: str = "UTC"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    broker: BrokerConfig = BrokerConfig()
    meter: MeterConfig = MeterConfig()
    pv: PvConfig = PvConfig()
    output: OutputConfig = OutputConfig()
    pricing: PricingConfig = PricingConfig()
    limits: LimitsConfig = LimitsConfig()
    api: ApiConfig = ApiConfig()
    fleet: FleetConfig = FleetConfig()
    source: str = field(default="<defaults>", compare=False, metadata={"internal": True})

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


def load(path: str | Path | None = None, *, required: bool = True) -> Config:
    """Read and validate a config file; `required=False` falls back to defaults when absent."""
    path = Path(path) if path is not None else DEFAULT_PATH
    source = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # no more: a 200 MB file is refused, not read
        text = raw.decode("utf-8")
    except FileNotFoundError:
        if not required:
            return Config()
        raise ConfigError(source, "", "file not found (give another one with --config FILE)")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"cannot read: {getattr(exc, 'strerror', None) or exc}")
    except ValueError as exc:  # a NUL in the path
        raise ConfigError(source, "", f"cannot read: {exc}")
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(source, "", f"larger than {MAX_FILE_BYTES // 2**20} MiB: pvsim reads "
                          "no more (a config is a few KiB; 100,000 meter ids take 2-15 MiB)")
    return parse(text, source)


def parse(text: str, source: str = "<string>") -> Config:
    """Validate YAML text against the Config schema."""
    data = read_yaml(text, source)
    if data is None:
        data = {}
    config = dataclasses.replace(_build(Config, data, source, ""), source=source)
    if isinstance(data.get("broker"), dict) and {"url", "urls"} <= data["broker"].keys():
        raise ConfigError(source, "broker.urls", "give broker.url (one node) or broker.urls "
                          "(a cluster's nodes), not both")
    config = validate_fleet(config, data)
    validate_pricing(config)
    if config.meter.max_w > config.limits.max_power_w:
        raise ConfigError(source, "meter.max_w", f"{config.meter.max_w:g} W is above "
                          f"limits.max_power_w ({config.limits.max_power_w:g} W): the meter's "
                          "readings would be refused")
    validate_pv(config)
    if config.meter.model == "series" and not config.meter.series_file:
        raise ConfigError(source, "meter.series_file", "required by meter.model series")
    return config


def read_yaml(text: str, source: str) -> Any:
    """The YAML document as Python values, or one ConfigError: malformed YAML, a key given
    twice (YAML would keep the last silently), or more than the loader accepts (MAX_* above),
    checked before anything is built from it. The file is read three times, each linear: its
    events (depth and count, before the composer, which recurses), its node graph (duplicate
    keys, integers, aliases counted as expanded) and the values built from it."""
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(source, "", f"larger than {MAX_FILE_BYTES // 2**20} MiB: pvsim reads "
                          "no more (a config is a few KiB; 100,000 meter ids take 2-15 MiB)")
    loader = _Loader(text)
    try:
        _check_events(_Loader(text), source)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, loader, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, "", f"malformed YAML: {where}{problem}")
    except RecursionError:  # defence in depth: _check_events bounds the nesting first
        raise ConfigError(source, "", f"malformed YAML: nested deeper than {MAX_DEPTH} levels")
    finally:
        loader.dispose()


def validate_fleet(config: Config, data: dict) -> Config:
    """The fleet's keys against each other; meter.count's ids put in meter.id."""
    fleet, source = config.fleet, config.source
    if fleet.instance >= fleet.instances:
        raise ConfigError(source, "fleet.instance", f"must be below fleet.instances "
                          f"({fleet.instances}): instances are numbered from 0, got {fleet.instance}")
    if fleet.instances > fleet.shards:
        raise ConfigError(source, "fleet.instances", f"{fleet.instances} instances for "
                          f"{fleet.shards} shards: an instance owns whole shards, so at most "
                          "fleet.shards instances")
    if fleet.shards > 1 and config.broker.queue_type == "classic":
        raise ConfigError(source, "broker.queue_type", "classic queues serve one shard: with "
                          "fleet.shards above 1 the queues are quorum queues (leave it unset)")
    meter = data.get("meter") if isinstance(data.get("meter"), dict) else {}
    if config.meter.count:
        if "id" in meter:
            raise ConfigError(source, "meter.count", "give meter.id (a list of meters) or "
                              "meter.count (that many generated ids), not both")
        config = with_meter_count(config, config.meter.count)
    return config


def with_meter_count(config: Config, count: int) -> Config:
    """The config with `count` generated meters, meter-000001, meter-000002, ... (six digits
    at least, so they sort in order up to a million) in place of meter.id."""
    ids = tuple(f"meter-{i:06d}" for i in range(1, count + 1))
    return dataclasses.replace(config, meter=dataclasses.replace(config.meter, count=count, id=ids))


def queue_type(broker: BrokerConfig, fleet: FleetConfig) -> str:
    """The queues' type: as configured, else quorum for a fleet of shards, classic for one."""
    return broker.queue_type or ("quorum" if fleet.shards > 1 else "classic")


def validate_pv(config: Config) -> None:
    """What each PV model needs: a site for clearsky, a file for weather and series."""
    pv, source = config.pv, config.source
    if pv.model == "clearsky":
        for key in ("latitude", "longitude"):
            if getattr(pv, key) is None:
                raise ConfigError(source, f"pv.{key}", "required by pv.model clearsky (the site)")
    for model, key in (("weather", "weather_file"), ("series", "series_file")):
        if pv.model == model and not getattr(pv, key):
            raise ConfigError(source, f"pv.{key}", f"required by pv.model {model}")


if getattr(yaml, "__with_libyaml__", False):  # Debian's python3-yaml: libyaml, 10 times faster
    from yaml._yaml import CParser as _Parser
else:  # pragma: no cover (a PyYAML without libyaml)
    class _Parser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,  # type: ignore
                  yaml.composer.Composer):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)


class _Loader(_Parser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """YAML's safe loader without its timestamps: a date stays text until the schema reads it,
    so 2026-02-30 is an error naming its key, not a ValueError from inside the YAML parser. A
    value its tag cannot make (`!!int abc`, `!!bool maybe`) is a YAML error at its line."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            raise yaml.constructor.ConstructorError(
                None, None, f"not a valid {shown(node.tag.rpartition(':')[2])} value",
                node.start_mark) from None


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_INT_TAG, _STR_TAG, _MERGE_TAG = (f"tag:yaml.org,2002:{t}" for t in ("int", "str", "merge"))


def _check_events(loader: _Loader, source: str) -> None:
    """The document's nesting and size, from the parser's events alone (a flat loop), before
    the composer, which recurses once per level: 5,000 levels would be a RecursionError."""
    frames: list[list] = []  # per open collection: [is_mapping, next is a key, key or index]
    count = 0
    try:
        while not loader.check_event(yaml.StreamEndEvent):
            event = loader.get_event()
            if isinstance(event, CollectionEndEvent):
                frames.pop()
                continue
            if not isinstance(event, (CollectionStartEvent, ScalarEvent, AliasEvent)):
                continue
            count += 1
            if frames:
                top = frames[-1]
                if not top[0]:
                    top[2] += 1
                elif top[1]:
                    top[2] = event.value if isinstance(event, ScalarEvent) else "(a key)"
                if top[0]:
                    top[1] = not top[1]
            if count > MAX_VALUES:
                raise ConfigError(source, _path((f[2] for f in frames), keys_only=True),
                                  f"more than {MAX_VALUES:,} values: pvsim reads no more")
            if isinstance(event, CollectionStartEvent):
                if len(frames) >= MAX_DEPTH:
                    raise ConfigError(source, _path((f[2] for f in frames), keys_only=True),
                                      f"nested deeper than {MAX_DEPTH} levels (line "
                                      f"{event.start_mark.line + 1}): pvsim reads no deeper")
                frames.append([isinstance(event, MappingStartEvent), True, -1])
    finally:
        loader.dispose()


def _check_nodes(root: yaml.Node, loader: _Loader, source: str) -> None:
    """The node graph as the values built from it will be: no key twice in a mapping (YAML
    keeps the last one silently, so the first is ignored), no integer longer than
    MAX_INTEGER_CHARS, and, each alias counted wherever it is used, at most MAX_VALUES values
    nested at most MAX_DEPTH deep. Linear in the nodes the file writes, whatever its aliases
    make of them: each node is checked once, and what it stands for once expanded is summed
    from its children's (a node met again through an alias is not walked again)."""
    size: dict[int, int] = {}    # id(collection): the values it stands for, expanded (capped)
    height: dict[int, int] = {}  # id(collection): its nesting, expanded (a scalar's is 1)
    entered: set[int] = set()    # the nodes on the walk's path: met again, a node holds itself
    _check_scalar(root, (), source)
    stack: list[tuple[yaml.Node, tuple, list | None]] = [(root, (), None)]
    while stack:
        node, parts, kids = stack.pop()  # kids: None when entered, its children when done
        if isinstance(node, ScalarNode):
            continue
        if kids is not None:
            size[id(node)] = min(1 + sum(size.get(id(k), 1) for _, k in kids), MAX_VALUES + 1)
            height[id(node)] = 1 + max((height.get(id(k), 1) for _, k in kids), default=0)
            entered.discard(id(node))
            continue
        if id(node) in size:
            continue
        if id(node) in entered:
            _too_large(root, size, height, source)
        entered.add(id(node))
        if isinstance(node, MappingNode):
            _check_keys(node, loader, source, parts)
        kids = _children(node)
        stack.append((node, parts, kids))
        for part, kid in reversed(kids):  # scalars here, collections when popped
            if isinstance(kid, ScalarNode):
                _check_scalar(kid, (*parts, part) if kid.tag == _INT_TAG else parts, source)
            else:
                stack.append((kid, (*parts, part), None))
    if size.get(id(root), 1) > MAX_VALUES or height.get(id(root), 1) > MAX_DEPTH + 1:
        _too_large(root, size, height, source)


def _check_scalar(node: yaml.Node, parts: tuple, source: str) -> None:
    if isinstance(node, ScalarNode) and node.tag == _INT_TAG and len(node.value) > MAX_INTEGER_CHARS:
        raise ConfigError(source, _path(parts), f"an integer of {len(node.value):,} characters: "
                          f"pvsim reads at most {MAX_INTEGER_CHARS}")


def _children(node: yaml.Node) -> list[tuple[str | int, yaml.Node]]:
    """A node's children, each with its part of a key path (a mapping's keys too)."""
    if isinstance(node, SequenceNode):
        return list(enumerate(node.value))
    if isinstance(node, MappingNode):
        return [(_key_name(k), n) for k, v in node.value for n in (k, v)]
    return []


def _too_large(root: yaml.Node, size: dict[int, int], height: dict[int, int],
               source: str) -> typing.NoReturn:
    """The error for a document too large or too deep once its aliases are expanded (or one
    holding itself: unfinished in `size`), naming the key whose value is."""
    def bad(node: yaml.Node, level: int) -> bool:
        if isinstance(node, ScalarNode):
            return False
        return (id(node) not in size or size[id(node)] > MAX_VALUES
                or height[id(node)] + level > MAX_DEPTH + 1)
    parts, node, level = [], root, 0
    while isinstance(node, MappingNode):
        found = next(((k, v) for k, v in node.value if bad(v, level + 1)), None)
        if found is None:
            break
        parts.append(_key_name(found[0]))
        node, level = found[1], level + 1
    what = ("holds itself" if id(node) not in size else f"more than {MAX_VALUES:,} values"
            if size[id(node)] > MAX_VALUES else f"nested deeper than {MAX_DEPTH} levels")
    raise ConfigError(source, _path(parts), f"{what} once its YAML aliases are expanded (an "
                      f"alias bomb? line {node.start_mark.line + 1}): pvsim reads no more")


def _check_keys(node: MappingNode, loader: _Loader, source: str, parts: tuple) -> None:
    """No key twice in one mapping; a key as the program reads it (1234 and '1234' are one)."""
    first: dict[str, yaml.Node] = {}
    for key, _ in node.value:
        if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
            continue
        name = key.value
        if key.tag != _STR_TAG and not (key.tag == _INT_TAG and len(key.value) > MAX_INTEGER_CHARS):
            try:
                name = str(loader.construct_object(key))
            except yaml.YAMLError:
                pass  # construction says what is wrong with it, at its line
        seen = first.setdefault(name, key)
        if seen is not key:
            raise ConfigError(source, _path((*parts, key.value)), f"set twice, at line "
                              f"{seen.start_mark.line + 1} and at line {key.start_mark.line + 1} "
                              "(YAML would keep the second silently): remove one")


def _key_name(key: yaml.Node) -> str:
    return key.value if isinstance(key, ScalarNode) else "(a key)"


def _path(parts: Any, keys_only: bool = False) -> str:
    """A dotted key path from mapping keys and list indices: meter.id[3]; at most 8 parts, or
    with `keys_only` the keys before the first index (the key whose value is too large)."""
    text = ""
    for n, part in enumerate(parts):
        if keys_only and isinstance(part, int):
            break
        if n == 8:
            return text + "..."
        text = f"{text}[{part}]" if isinstance(part, int) else _join(text, part)
    return text or "(top level)"


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, checking keys, types and ranges recursively."""
    if not isinstance(data, dict):
        raise ConfigError(source, prefix or "(top level)", f"expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = _join(prefix, unknown[0])
        raise ConfigError(source, key, f"unknown key (known keys here: {', '.join(fields)})")
    values = {}
    for name, fld in fields.items():
        key = _join(prefix, name)
        if name in data:
            values[name] = _convert(hints[name], data[name], source, key, fld.metadata)
        elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            raise ConfigError(source, key, "missing (this key is required)")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # defensive: dataclass construction problems
        raise ConfigError(source, prefix, str(exc))


def _convert(tp: Any, value: Any, source: str, key: str, meta: Any) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        # A section whose keys are all commented out is empty (null in YAML): its defaults.
        return _build(tp, {} if value is None else value, source, key)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(source, key, f"must be one of {choices}, got {shown(value)}")
        return value
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        inner = next(a for a in args if a is not type(None))
        return _convert(inner, value, source, key, meta)
    if origin is tuple:
        item = args[0]
        if key == "meter.id" and isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not (value or meta.get("empty_ok")):
            kind = "a list" if meta.get("empty_ok") else "a non-empty list"
            raise ConfigError(source, key, f"expected {kind}, got {_describe(value)}")
        items = tuple(_convert(item, v, source, f"{key}[{i}]", meta) for i, v in enumerate(value))
        if key == "pv.linke_turbidity" and len(items) not in (1, 12):
            raise ConfigError(source, key, f"one value or twelve (one per month), got {len(items)}")
        # Ids, names and dates must be unique; numbers (monthly values) may repeat.
        return items if item is float else _check_unique(items, source, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, key, f"expected a mapping, got {_describe(value)}")
        return {str(k): _convert(args[1], v, source, _join(key, k), {}) for k, v in value.items()}
    if tp is dt.date:
        return _date(value, source, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, key, f"expected an integer, got {_describe(value)}")
        return _check_range(value, source, key, meta)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(source, key, f"expected a number, got {_describe(value)}")
        return _check_range(float(value), source, key, meta)
    if tp is str:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(source, key, f"expected a non-empty string, got {_describe(value)}")
        return check_string(value, source, key)
    raise ConfigError(source, key, f"unsupported type {tp}")  # a schema bug, not a user error


def _date(value: Any, source: str, key: str) -> dt.date:
    """A calendar date, written YYYY-MM-DD (quoted or not: _Loader leaves both as text)."""
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(source, key, f"expected a date YYYY-MM-DD, got {_describe(value)}")


def _check_range(value: float, source: str, key: str, meta: Any) -> Any:
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
        bound = f"greater than {lo:g}" if meta.get("lo_open") else f"at least {lo:g}"
        raise ConfigError(source, key, f"must be {bound}, got {shown(value)}")
    if hi is not None and value > hi:
        raise ConfigError(source, key, f"must be at most {hi:g}, got {shown(value)}")
    return value


def check_string(value: str, source: str, key: str) -> str:
    """Semantic checks for the strings whose mistakes would otherwise surface much later."""
    if len(value) > MAX_STRING_CHARS:
        raise ConfigError(source, key, f"{len(value):,} characters: pvsim reads at most "
                          f"{MAX_STRING_CHARS:,} ({shown(value)})")
    if key in _AMQP_NAMES and len(value.encode("utf-8", "surrogatepass")) > MAX_AMQP_NAME_BYTES:
        raise ConfigError(source, key, f"a RabbitMQ name of at most {MAX_AMQP_NAME_BYTES} bytes "
                          f"(pvsim appends to it), got {shown(value)}")
    if key == "timezone":
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(source, key, f"unknown time zone {shown(value)} (use an IANA name such as Europe/Madrid)")
    elif key.endswith(".listen"):
        parse_listen(value, source, key)
    elif key == "broker.url" or key.startswith("broker.urls["):
        _check_amqp_url(value, source, key)
    elif key.startswith("meter.id") and not METER_ID.fullmatch(value):
        raise ConfigError(source, key, f"not a meter id ({METER_ID_RULE}): {shown(value)}")
    elif key == "pricing.currency" and not (re.fullmatch(r"[A-Z]{3}", value) or (
            len(value) == 1 and unicodedata.category(value) == "Sc")):
        raise ConfigError(source, key, "not a currency: an ISO 4217 code (EUR, GBP, USD) or one "
                          f"currency sign (€, £, $), got {shown(value)}")
    elif key.startswith("api.allowed_hosts") and not _HOST_NAME.fullmatch(value):
        raise ConfigError(source, key, f"not a host name (letters, digits, - and ., no port): "
                          f"{shown(value)}")
    return value


def _check_amqp_url(url: str, source: str, key: str) -> None:
    """The parts of an AMQP URL a typo breaks; the message never repeats the URL (it may hold
    a password). pika checks the query options when the programs start (broker.check_url)."""
    if not url.startswith(("amqp://", "amqps://")):
        raise ConfigError(source, key, "must start with amqp:// or amqps://")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        reason = "its port is not a number" if "digits" in str(exc) else str(exc).split(" as ")[0]
        raise ConfigError(source, key, f"not a valid URL: {reason.lower()} "
                          "(the form is amqp://USER:PASSWORD@HOST:PORT/VHOST)") from None
    if not parts.hostname:
        raise ConfigError(source, key, "has no host (the form is amqp://USER:PASSWORD@HOST:PORT/VHOST)")
    if port == 0:
        raise ConfigError(source, key, "port must be from 1 to 65535")
    if any(c.isspace() for c in url):
        raise ConfigError(source, key, "must not contain white space")


def _check_unique(items: tuple, source: str, key: str) -> tuple:
    seen: set = set()
    for item in items:
        ident = getattr(item, "id", item)
        if ident in seen:
            raise ConfigError(source, key, f"{shown(ident)} appears twice")
        seen.add(ident)
    return items


def parse_listen(value: str, source: str = "<flag>", key: str = "listen") -> tuple[str, int]:
    """Split 'host:port' ('[::1]:9762' for IPv6) and check both halves."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isdigit() and len(port) <= 5) or not 0 < int(port) < 65536:
        raise ConfigError(source, key, f"expected host:port such as 127.0.0.1:9762, got {shown(value)}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost" and not all(p.isalnum() or "-" in p for p in host.split(".")):
            raise ConfigError(source, key, f"not an IP address or host name: {shown(host)}")
    return host, int(port)


def validate_pricing(config: Config) -> None:
    """Cross-field checks: accounts name known plans, multipliers name weekdays."""
    plan_ids = {p.id for p in config.pricing.plans}
    for i, plan in enumerate(config.pricing.plans):
        for day, mult in plan.peak_multipliers.items():
            key = f"pricing.plans[{i}].peak_multipliers.{day}"
            if day not in WEEKDAYS:
                raise ConfigError(config.source, key, f"not a weekday (one of {', '.join(WEEKDAYS)})")
            if mult < 0:
                raise ConfigError(config.source, key, f"must be at least 0, got {shown(mult)}")
    for meter, plan in config.pricing.accounts.items():
        if plan not in plan_ids:
            raise ConfigError(config.source, _join("pricing.accounts", meter), f"unknown plan {shown(plan)}")


def _join(prefix: str, name: object) -> str:
    """A dotted key path; a name that is not plain text (a number, spaces, control characters)
    is shown as Python would write it, so the message stays one readable line, and a long one
    is cut."""
    text = str(name)[:SHOWN_CHARS + 1] if isinstance(name, str) else None
    if not (text and text.isprintable() and text.strip() == text and len(text) <= SHOWN_CHARS):
        text = shown(name)
    return f"{prefix}.{text}" if prefix else text


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` as one printable line of at most `limit` characters (control characters escaped)."""
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return line if len(line) <= limit else line[:limit - 3] + "..."


def shown(value: Any) -> str:
    """`value` as Python would write it, cut to a few dozen characters: an error line quotes
    what a file holds, never all of it (a list is named, not written out: through YAML aliases a
    442-byte file makes one of 9^10 items)."""
    if isinstance(value, dict):
        return f"a mapping of {len(value):,} keys"
    if isinstance(value, (list, tuple, set, frozenset)):
        return f"a list of {len(value):,} items"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103):,} digits"
    if isinstance(value, (str, bytes)) and len(value) > SHOWN_CHARS:
        return f"{value[:SHOWN_CHARS]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= 2 * SHOWN_CHARS else text[:2 * SHOWN_CHARS] + "..."


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "a list"
    kind = {str: "the string", bool: "the boolean"}.get(type(value))
    return f"{kind} {shown(value)}" if kind else shown(value)
