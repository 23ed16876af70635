"""The YAML configuration, loaded into frozen dataclasses. Imports nothing of pvsim's layers:
every layer may import it.

Every mistake a user can make in the file (malformed YAML, an unknown key, a wrong type, a value
out of range, a missing file) becomes one ConfigError whose message names the file, the key and
the problem; the entry points turn it into one line on stderr and exit code 78 (os.EX_CONFIG),
which the systemd units list in RestartPreventExitStatus so a broken config does not restart-loop.

The package, by concept:

    schema     the keys: the section dataclasses, each field's meaning, unit, bounds and checks
    keyspec    what a field's metadata says (Spec), and the walk over every key
    checks     the value checks fields attach (time zone, host:port, AMQP URL, meter id, ...)
    convert    the generic converter: a YAML mapping into a dataclass, by the fields' specs
    rules      the rules between keys (url or urls, the fleet, what a model needs, plans)
    safeyaml   YAML's safe loader within caps (size, values, depth), duplicate keys refused
    errors     ConfigError and how a problem is said in one short line
    reference  docs/reference/config.md, generated from the schema (python3 -m pvsim.config --reference)

This module is the API the programs use: load, parse, Config and its sections, ConfigError.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pvsim.config.checks import METER_ID, METER_ID_RULE, MAX_AMQP_NAME_BYTES, parse_listen
from pvsim.config.convert import MAX_STRING_CHARS, build, check_length
from pvsim.config.errors import (MAX_ERROR_CHARS, SHOWN_CHARS, USAGE_ERROR_CHARS, ConfigError,
                                 UsageParser, one_line, shown)
from pvsim.config.keyspec import spec_for
from pvsim.config.rules import (check_rules, queue_type, validate_fleet, validate_pricing, validate_pv,
                                with_meter_count)
from pvsim.config.safeyaml import (MAX_DEPTH, MAX_FILE_BYTES, MAX_INTEGER_CHARS, MAX_VALUES, TOO_LARGE,
                                   read_yaml)
from pvsim.config.schema import (MAX_METER_COUNT, WEEKDAYS, ApiConfig, BrokerConfig, Config, FleetConfig,
                                 LimitsConfig, MeterConfig, OutputConfig, PricePlanConfig, PricingConfig,
                                 PvConfig)

__all__ = [
    "DEFAULT_PATH", "load", "parse", "check_string", "read_yaml",
    "Config", "BrokerConfig", "MeterConfig", "PvConfig", "LimitsConfig", "ApiConfig", "OutputConfig",
    "PricePlanConfig", "PricingConfig", "FleetConfig", "ConfigError", "UsageParser",
    "queue_type", "with_meter_count", "validate_fleet", "validate_pricing", "validate_pv",
    "parse_listen", "one_line", "shown", "METER_ID", "METER_ID_RULE", "WEEKDAYS", "MAX_METER_COUNT",
    "MAX_FILE_BYTES", "MAX_VALUES", "MAX_DEPTH", "MAX_INTEGER_CHARS", "MAX_STRING_CHARS",
    "MAX_AMQP_NAME_BYTES", "MAX_ERROR_CHARS", "SHOWN_CHARS", "USAGE_ERROR_CHARS",
]

DEFAULT_PATH = Path("/etc/pvsim/pvsim.yaml")


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
        raise ConfigError(source, "", TOO_LARGE)
    return parse(text, source)


def parse(text: str, source: str = "<string>") -> Config:
    """Validate YAML text against the Config schema."""
    data = read_yaml(text, source)
    if data is None:
        data = {}
    config = dataclasses.replace(build(Config, data, source, ""), source=source)
    return check_rules(config, data)


def check_string(value: str, source: str, key: str) -> str:
    """A text given for config key `key` elsewhere than in a file (a command-line flag, such as
    pvsim-run's --timezone), checked as the file's value would be."""
    about = spec_for(Config, key)
    check_length(value, source, key)
    if about.check is not None:
        about.check(value, source, key)
    return value
