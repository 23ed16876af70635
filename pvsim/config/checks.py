"""The checks a key's value must pass beyond its type and range, each attached to its field
(`spec(check=...)` or `spec(each=...)` in pvsim/config/schema.py): a time zone that exists, an
address to listen on, an AMQP URL... Each is a `Check`, a function with a phrase for the reference
(docs/reference/config.md) saying what it accepts; the mistakes they catch would otherwise
surface much later (at a connection, on a chart) or never.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
import urllib.parse
import zoneinfo
from dataclasses import dataclass
from typing import Any, Callable

from pvsim.config.errors import ConfigError, shown

# A meter id, everywhere (config, messages, the API): nothing a CSV cell must quote or a
# spreadsheet could take for a formula (OWASP's triggers are = + - @ first: so a letter or a
# digit comes first).
METER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
METER_ID_RULE = "1-64 characters from A-Z, a-z, 0-9 and . _ : -, the first a letter or a digit"
MAX_AMQP_NAME_BYTES = 200  # AMQP's 255, less what pvsim appends (".run.<id>.dead", ".s001")
_HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_URL_FORM = "(the form is amqp://USER:PASSWORD@HOST:PORT/VHOST)"


@dataclass(frozen=True)
class Check:
    """A test of a converted value (`test(value, source, key)` raises ConfigError), and what it
    accepts, as the reference's type column says it."""

    accepts: str
    test: Callable[[Any, str, str], object]

    def __call__(self, value: Any, source: str, key: str) -> None:
        self.test(value, source, key)


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


def _time_zone(value: str, source: str, key: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(source, key, f"unknown time zone {shown(value)} (use an IANA name such as "
                          "Europe/Madrid)")


def _amqp_url(url: str, source: str, key: str) -> None:
    """The parts of an AMQP URL a typo breaks; the message never repeats the URL (it may hold
    a password). pika checks the query options when the programs start (broker.check_url)."""
    if not url.startswith(("amqp://", "amqps://")):
        raise ConfigError(source, key, "must start with amqp:// or amqps://")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        reason = "its port is not a number" if "digits" in str(exc) else str(exc).split(" as ")[0]
        raise ConfigError(source, key, f"not a valid URL: {reason.lower()} {_URL_FORM}") from None
    if not parts.hostname:
        raise ConfigError(source, key, f"has no host {_URL_FORM}")
    if port == 0:
        raise ConfigError(source, key, "port must be from 1 to 65535")
    if any(c.isspace() for c in url):
        raise ConfigError(source, key, "must not contain white space")


def _amqp_name(value: str, source: str, key: str) -> None:
    if len(value.encode("utf-8", "surrogatepass")) > MAX_AMQP_NAME_BYTES:
        raise ConfigError(source, key, f"a RabbitMQ name of at most {MAX_AMQP_NAME_BYTES} bytes "
                          f"(pvsim appends to it), got {shown(value)}")


def _meter_id(value: str, source: str, key: str) -> None:
    if not METER_ID.fullmatch(value):
        raise ConfigError(source, key, f"not a meter id ({METER_ID_RULE}): {shown(value)}")


def _currency(value: str, source: str, key: str) -> None:
    if not (re.fullmatch(r"[A-Z]{3}", value) or (len(value) == 1 and unicodedata.category(value) == "Sc")):
        raise ConfigError(source, key, "not a currency: an ISO 4217 code (EUR, GBP, USD) or one "
                          f"currency sign (€, £, $), got {shown(value)}")


def _host_name(value: str, source: str, key: str) -> None:
    if not _HOST_NAME.fullmatch(value):
        raise ConfigError(source, key, f"not a host name (letters, digits, - and ., no port): "
                          f"{shown(value)}")


def _one_or_twelve(values: tuple, source: str, key: str) -> None:
    if len(values) not in (1, 12):
        raise ConfigError(source, key, f"one value or twelve (one per month), got {len(values)}")


TIME_ZONE = Check("an IANA time zone name, such as Europe/Madrid", _time_zone)
LISTEN = Check("host:port, such as 127.0.0.1:9762 or [::1]:9762", parse_listen)
AMQP_URL = Check("an amqp:// or amqps:// URL: amqp://USER:PASSWORD@HOST:PORT/VHOST", _amqp_url)
AMQP_NAME = Check(f"a RabbitMQ name of at most {MAX_AMQP_NAME_BYTES} bytes", _amqp_name)
METER = Check(f"a meter id: {METER_ID_RULE}", _meter_id)
CURRENCY = Check("an ISO 4217 code (EUR, GBP, USD) or one currency sign (€, £, $)", _currency)
HOST_NAME = Check("a host name, without the port", _host_name)
ONE_OR_TWELVE = Check("one value, or twelve (January to December)", _one_or_twelve)
