"""The rules between keys, checked once every key has passed its own: url or urls, the fleet's
numbers against each other, what each model needs, plans that accounts name. Each names the key
to change."""

from __future__ import annotations

import dataclasses

from pvsim.config.errors import ConfigError, join_key, shown
from pvsim.config.schema import WEEKDAYS, BrokerConfig, Config, FleetConfig


def check_rules(config: Config, data: dict) -> Config:
    """`config` (as built from the file's `data`) once its keys agree, meter.count's ids in
    meter.id; or the ConfigError of the first rule it breaks."""
    source = config.source
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
    meter: dict = data["meter"] if isinstance(data.get("meter"), dict) else {}
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
    for meter, plan_id in config.pricing.accounts.items():
        if plan_id not in plan_ids:
            raise ConfigError(config.source, join_key("pricing.accounts", meter),
                              f"unknown plan {shown(plan_id)}")
