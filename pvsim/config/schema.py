"""The schema: every key of pvsim.yaml, as frozen dataclasses, one per section.

Each field is a key: its Python type, its default, and its `spec` (pvsim/config/keyspec.py): the
meaning and unit written once, the bounds and checks the converter applies. The reference
docs/reference/config.md is generated from it (`python3 -m pvsim.config --reference`), and the
shipped config/pvsim.yaml and man/pvsim.yaml.5 are tested against it (tests/test_config_docs.py).
Each section's docstring introduces it in the reference.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from typing import Literal

from pvsim.config import checks
from pvsim.config.keyspec import spec

MAX_METER_COUNT = 10_000_000
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class BrokerConfig:
    """RabbitMQ: where the readings go from pvsim-meter (or pvsim-run) to pvsim-pv."""

    url: str = field(default="amqp://guest:guest@127.0.0.1:5672/%2F", metadata=spec(
        "The RabbitMQ server (%2F is the default vhost /; amqps:// for TLS). The password is never "
        "logged.", check=checks.AMQP_URL))
    urls: tuple[str, ...] = field(default=(), metadata=spec(
        "A cluster instead of url: its nodes' URLs, tried in turn; the first that answers is used, "
        "and when it fails the programs reconnect to the next. Give url or urls, not both.",
        each=checks.AMQP_URL, empty_ok=True))
    exchange: str = field(default="pvsim", metadata=spec(
        "Durable direct exchange the readings are published to.", check=checks.AMQP_NAME))
    queue: str = field(default="pvsim.readings", metadata=spec(
        "Durable queue pvsim-pv consumes (pvsim-run uses a private <queue>.run.<id>).",
        check=checks.AMQP_NAME))
    dead_letter_exchange: str = field(default="pvsim.dead", metadata=spec(
        "Where rejected (malformed or invalid) messages go, with the reason in the x-pvsim-reason "
        "header.", check=checks.AMQP_NAME))
    dead_letter_queue: str = field(default="pvsim.readings.dead", metadata=spec(
        "The queue that keeps the rejected messages.", check=checks.AMQP_NAME))
    dead_letter_max_length: int = field(default=100_000, metadata=spec(
        "Messages the dead-letter queue keeps at most, dropping the oldest (0: no limit).",
        unit="messages", lo=0, hi=100_000_000))
    dead_letter_max_bytes: int = field(default=256 * 1024 * 1024, metadata=spec(
        "Bytes of message bodies the dead-letter queue keeps at most, dropping the oldest (0: no "
        "limit); a body over the 1 MiB a message may have is kept cut to its first 64 KiB.",
        unit="bytes", lo=0, hi=1 << 40))
    connect_attempts: int = field(default=5, metadata=spec(
        "Connection attempts before a one-shot pvsim-run gives up; the daemons retry forever.",
        lo=1, hi=1000))
    retry_initial_seconds: float = field(default=0.5, metadata=spec(
        "First delay between two connection attempts (exponential back-off, with jitter).",
        unit="s", lo=0.01, hi=3600))
    retry_max_seconds: float = field(default=30.0, metadata=spec(
        "Longest delay between two connection attempts.", unit="s", lo=0.1, hi=3600))
    heartbeat_seconds: int = field(default=30, metadata=spec(
        "AMQP heartbeat; 0 disables it (dead connections then go unnoticed).", unit="s", lo=0, hi=3600))
    prefetch: int = field(default=1000, metadata=spec(
        "Unacknowledged messages RabbitMQ may hand pvsim-pv at once.", unit="messages", lo=1, hi=65535))
    batch_size: int = field(default=500, metadata=spec(
        "Readings per AMQP message at most: pvsim-run's batches, and pvsim-meter's when it drains a "
        "backlog (the daemons send what they have).", unit="readings", lo=1, hi=10000))
    queue_type: Literal["classic", "quorum"] | None = field(default=None, metadata=spec(
        "classic: one queue on one node; quorum: replicated over a cluster's nodes, with single "
        "active consumer (the only type with fleet.shards above 1). Unset: classic with one "
        "shard, quorum with more. RabbitMQ refuses to redeclare an existing queue's type."))
    delivery_limit: int = field(default=20, metadata=spec(
        "Quorum queues: a message delivered this many times without being acknowledged (its "
        "consumer died each time) goes to the dead-letter queue rather than round again.",
        unit="deliveries", lo=1, hi=10_000))


@dataclass(frozen=True)
class MeterConfig:
    """The building's grid meter, simulated by pvsim-meter (and pvsim-run)."""

    id: tuple[str, ...] = field(default=("smart-meter-0",), metadata=spec(
        "A meter id, or a list of them: one reading per meter and second. The default is the "
        "first JOI Energy trial meter.", each=checks.METER, one_or_list=True))
    count: int = field(default=0, metadata=spec(
        "Instead of id: this many meters, named meter-000001, meter-000002, ... (a fleet; 0: "
        "use id).", unit="meters", lo=0, hi=MAX_METER_COUNT))
    seed: int = field(default=42, metadata=spec(
        "Seed of the load model: a reading depends only on the seed, the meter id and the instant."))
    model: Literal["building", "uniform", "slp", "series"] = field(default="building", metadata=spec(
        "building: a commercial building's day (less at weekends) with seeded variation; uniform: "
        "any value in [0, max_w] (the challenge's original); slp: a BDEW standard load profile "
        "(profile, annual_kwh, holidays); series: a recorded consumption series (series_file, "
        "series_unit), replayed."))
    max_w: float = field(default=9000.0, metadata=spec(
        "The most the meter reads (the challenge's meter: 9000); a model's value above it is "
        "clipped, counted (pvsim_meter_readings_clipped_total) and reported by pvsim-run's "
        "summary. Readings stored through the JOI API are real data and are not clipped.",
        unit="W", lo=0.0, hi=1e9, lo_open=True))
    profile: Literal["H0", "G0", "G1", "G2", "G3", "G4", "G5", "G6", "L0", "L1", "L2"] = field(
        default="H0", metadata=spec(
            "slp: the BDEW profile: H0 households (dynamised day by day), G0-G6 commercial (general, "
            "weekdays 8-18 h, evenings, continuous, shops, bakeries, weekends), L0-L2 agricultural "
            "(general, dairy, other)."))
    annual_kwh: float = field(default=3500.0, metadata=spec(
        "slp: the consumption of each calendar year (3500: a German household of three).",
        unit="kWh", lo=0.0, hi=1e9, lo_open=True))
    holidays: tuple[dt.date, ...] = field(default=(), metadata=spec(
        "slp: public holidays (YYYY-MM-DD), which take the Sunday profile as Sundays do; 24 and "
        "31 December take Saturday's unless listed.", empty_ok=True))
    series_file: str = field(default="", metadata=spec(
        "series: a CSV of timestamp,value rows (local ISO 8601 times); a year or more, one year "
        "serving any year. Required by model series."))
    series_unit: Literal["w", "kw", "kwh"] = field(default="kw", metadata=spec(
        "series: the values' unit: w or kw (power at the stamp), kwh (the energy of the interval "
        "from the stamp to the next row's)."))
    listen: str = field(default="127.0.0.1:9761", metadata=spec(
        "Address of pvsim-meter's HTTP endpoint (/metrics, /healthz).", check=checks.LISTEN))
    buffer_size: int = field(default=86400, metadata=spec(
        "Readings kept while RabbitMQ is unreachable; the oldest are dropped (and counted) past "
        "it. Also the most seconds pvsim-meter produces after a restart.",
        unit="readings", lo=1, hi=10_000_000))
    state_file: str = field(default="/var/lib/pvsim/pvsim-meter.state", metadata=spec(
        "Where pvsim-meter records the last instant RabbitMQ confirmed per meter; after a restart "
        "it produces the seconds it missed (at most buffer_size readings) before the current ones."))


@dataclass(frozen=True)
class PvConfig:
    """The PV plant, simulated by pvsim-pv (and pvsim-run), and pvsim-pv's HTTP API."""

    model: Literal["chart", "clearsky", "weather", "series"] = field(default="chart", metadata=spec(
        "chart: the challenge's reference curve, every day alike; clearsky: the sun over the site "
        "through the array, by season; weather: a typical year's weather file (EPW) through the "
        "array; series: a recorded PV output series (PVGIS hourly CSV, or timestamp,kw) as it is."))
    peak_kw: float = field(default=3.25, metadata=spec(
        "chart: the curve's peak (kW AC); clearsky and weather: the array's DC nameplate (kWp).",
        unit="kW", lo=0.0, hi=1_000_000.0, lo_open=True))
    latitude: float | None = field(default=None, metadata=spec(
        "The site, north positive. Required by clearsky; weather takes its file's LOCATION line "
        "unless set.", unit="degrees", lo=-90.0, hi=90.0))
    longitude: float | None = field(default=None, metadata=spec(
        "The site, east positive (as latitude).", unit="degrees", lo=-180.0, hi=180.0))
    altitude_m: float | None = field(default=None, metadata=spec(
        "The site's height above sea level (as latitude).", unit="m", lo=-500.0, hi=9000.0))
    tilt_deg: float = field(default=30.0, metadata=spec(
        "The array's tilt: 0 flat, 90 vertical.", unit="degrees", lo=0.0, hi=90.0))
    azimuth_deg: float = field(default=180.0, metadata=spec(
        "The way the array faces, clockwise from north: 180 south, 90 east, 270 west, 0 north.",
        unit="degrees", lo=0.0, hi=360.0))
    losses: float = field(default=0.14, metadata=spec(
        "System losses (wiring, soiling, mismatch, availability) as a share of DC power: PVWatts'.",
        lo=0.0, hi=0.99))
    inverter_kw: float | None = field(default=None, metadata=spec(
        "The inverter's AC rating (output above it is clipped); unset: sized to peak_kw.",
        unit="kW", lo=0.0, hi=1_000_000.0, lo_open=True))
    albedo: float = field(default=0.2, metadata=spec(
        "Ground reflectance: 0.2 grass, 0.3 concrete, 0.8 fresh snow.", lo=0.0, hi=1.0))
    linke_turbidity: tuple[float, ...] = field(default=(3.0,), metadata=spec(
        "clearsky: the Linke turbidity of the air, one value or twelve (January to December); 3 is "
        "a rural mid-latitude average. scripts/pvlib-reference --linke LAT LON prints a site's.",
        lo=1.0, hi=10.0, check=checks.ONE_OR_TWELVE))
    temperature_c: float = field(default=20.0, metadata=spec(
        "clearsky: the air temperature the cells' temperature derate starts from.",
        unit="°C", lo=-50.0, hi=60.0))
    weather_file: str = field(default="", metadata=spec(
        "weather: an EPW file (EnergyPlus weather, as PVGIS's TMY tool exports). Required by "
        "model weather."))
    series_file: str = field(default="", metadata=spec(
        "series: a PVGIS hourly CSV or a CSV headed timestamp,kw; one year serves every year. "
        "Required by model series."))
    noise: float = field(default=0.0, metadata=spec(
        "Depth of multiplicative cloud noise: 0 reproduces the reference curve exactly, 0.3 "
        "takes up to 30 % off as clouds pass.", lo=0.0, hi=1.0))
    seed: int = field(default=7, metadata=spec("Seed of the cloud noise."))
    listen: str = field(default="127.0.0.1:9762", metadata=spec(
        "Address of pvsim-pv's HTTP endpoint (/metrics, /healthz and the JOI Energy API).",
        check=checks.LISTEN))
    max_meters: int = field(default=10_000, metadata=spec(
        "Distinct meters the JOI API takes readings for; a POST for one more is refused (403).",
        unit="meters", lo=1, hi=1_000_000))
    max_days: int = field(default=1500, metadata=spec(
        "Local days with readings (files) POSTs may bring into being, in all: a POST for one more "
        "is refused (403); the meters' own readings never are.", unit="days", lo=1, hi=1_000_000))


@dataclass(frozen=True)
class LimitsConfig:
    """Sanity limits on what pvsim accepts from anyone."""

    max_power_w: float = field(default=10_000_000.0, metadata=spec(
        "Sanity limit of any power pvsim accepts (messages, POSTed and recorded readings): a value "
        "beyond it is an error, never clipped. 10 MW: well above any building on one meter.",
        unit="W", lo=0.0, hi=1e12, lo_open=True))


@dataclass(frozen=True)
class ApiConfig:
    """Who the HTTP endpoints of both daemons answer."""

    allowed_hosts: tuple[str, ...] = field(default=(), metadata=spec(
        "Host names (as in the Host header, without the port) the endpoints answer besides IP "
        "addresses and localhost; any other is refused (421), so a web page cannot reach them by "
        "DNS rebinding. List the names clients use when a port is open beyond loopback.",
        each=checks.HOST_NAME, empty_ok=True))
    token_file: str = field(default="", metadata=spec(
        "A file (mode 0640 or stricter) holding a token that POST /readings/store must carry as "
        "\"Authorization: Bearer TOKEN\" (401 otherwise). Empty: no token (fine while pv.listen "
        "is on loopback)."))


@dataclass(frozen=True)
class OutputConfig:
    """The daily CSV files pvsim-pv writes."""

    directory: str = field(default="/var/lib/pvsim", metadata=spec(
        "Where pvsim-pv writes pvsim-YYYY-MM-DD.csv (pvsim-run writes to --output DIR instead)."))
    sync_rows: int = field(default=1000, metadata=spec(
        "Rows written between two fsyncs in the daemon; a message is acknowledged only after its "
        "fsync.", unit="rows", lo=1, hi=1_000_000))
    min_free_mb: int = field(default=200, metadata=spec(
        "Below this much free space in directory, pvsim-pv's /healthz answers 503, well before "
        "the disk is full (pvsim_pv_output_free_bytes shows the figure).", unit="MB", lo=0, hi=10_000_000))
    retention_days: int = field(default=400, metadata=spec(
        "pvsim-pv removes the daily CSVs (and their aggregates) older than this, once nothing was "
        "written to them for as long either, at start and hourly; 0 keeps them all. 400: a year "
        "for the annual figures, and a month to spare.", unit="days", lo=0, hi=100_000))


@dataclass(frozen=True)
class PricePlanConfig:
    """A price plan of the JOI Energy API."""

    id: str = field(metadata=spec("The plan's id, as accounts name it."))
    supplier: str = field(metadata=spec("The supplier's name."))
    unit_rate: float = field(metadata=spec("The price of a kWh, in pricing.currency.", lo=0.0))
    peak_multipliers: dict[str, float] = field(default_factory=dict, metadata=spec(
        "Factors of the unit rate by weekday (monday to sunday), such as {saturday: 1.5}."))


@dataclass(frozen=True)
class PricingConfig:
    """Electricity prices, for the JOI Energy API and pvsim-run's summary."""

    plans: tuple[PricePlanConfig, ...] = field(default=(
        PricePlanConfig("price-plan-0", "Dr Evil's Dark Energy", 10.0),
        PricePlanConfig("price-plan-1", "The Green Eco", 2.0),
        PricePlanConfig("price-plan-2", "Power for Everyone", 1.0),
    ), metadata=spec("The price plans (the defaults: JOI Energy's table)."))
    accounts: dict[str, str] = field(default_factory=lambda: {
        "smart-meter-0": "price-plan-0",
        "smart-meter-1": "price-plan-1",
        "smart-meter-2": "price-plan-0",
        "smart-meter-3": "price-plan-2",
        "smart-meter-4": "price-plan-1",
    }, metadata=spec("Which plan each meter is on: meter id to plan id."))
    feed_in_tariff: float = field(default=0.0, metadata=spec(
        "Paid per kWh exported to the grid (in pricing.currency).", lo=0.0))
    max_gap_seconds: float = field(default=3600.0, metadata=spec(
        "Readings further apart than this are not bridged when integrating energy.",
        unit="s", lo=0.0, lo_open=True))
    currency: str = field(default="EUR", metadata=spec(
        "The unit of every price: unit rates, the feed-in tariff and the costs shown with them.",
        check=checks.CURRENCY))


@dataclass(frozen=True)
class FleetConfig:
    """Many meters over several pvsim-meter and pvsim-pv processes on one RabbitMQ cluster."""

    shards: int = field(default=1, metadata=spec(
        "Logical shards the meters are spread over (crc32 of the meter id): one quorum queue and "
        "one set of daily files per shard, each written by one pvsim-pv at a time. 1: no fleet. "
        "Fixed for the life of an output directory: it decides which file holds which meter.",
        lo=1, hi=1000))
    instances: int = field(default=1, metadata=spec(
        "pvsim-meter processes sharing the meters: instance k simulates the meters of shards k, "
        "k + instances, k + 2 * instances, ...", lo=1, hi=1000))
    instance: int = field(default=0, metadata=spec(
        "Which of the instances this is, from 0.", lo=0, hi=999))


@dataclass(frozen=True)
class Config:
    """The keys at the top of the file."""

    timezone: str = field(default="UTC", metadata=spec(
        "IANA time zone of the building and the plant: the CSV timestamps carry its UTC offset, "
        "each local day has its file, and the PV models run on its clock.", check=checks.TIME_ZONE))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = field(default="INFO", metadata=spec(
        "The daemons' log level (they log to stderr, the journal); pvsim-run logs warnings unless -v."))
    broker: BrokerConfig = BrokerConfig()
    meter: MeterConfig = MeterConfig()
    pv: PvConfig = PvConfig()
    output: OutputConfig = OutputConfig()
    pricing: PricingConfig = PricingConfig()
    limits: LimitsConfig = LimitsConfig()
    api: ApiConfig = ApiConfig()
    fleet: FleetConfig = FleetConfig()
    source: str = field(default="<defaults>", compare=False, metadata=spec(
        "The file it was read from, for messages.", internal=True))

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)
