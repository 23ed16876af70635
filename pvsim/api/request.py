"""The parsing of a JOI request, apart from its routing and answers: query parameters (one value
each, whole numbers bounded in digits, true/false flags, a page limit) and the POST body (JSON with
no NaN or Infinity and no lone surrogates). Each refusal is a `ClientError` carrying the HTTP status
and the one-line detail the client reads."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import overload

MAX_DIGITS = 20               # significant digits of a whole number in a query: more is out of range
_WHOLE = re.compile(r"^[+-]?\d+$")
_TRUE, _FALSE = {"true", "1", "yes", ""}, {"false", "0", "no"}


class ClientError(Exception):
    def __init__(self, status: int, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def _json_body(body: bytes) -> dict:
    if not body.strip():
        raise ClientError(400, "the request has no body; send {\"smartMeterId\": ..., "
                               "\"electricityReadings\": [...]}")
    try:
        doc = json.loads(body, parse_constant=_reject_constant, parse_float=_finite)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ClientError(400, f"the body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise ClientError(400, "the body must be a JSON object")
    return doc


def _check_text(doc: object) -> None:
    """Every string and key of a parsed body must be text UTF-8 can hold: JSON's "\\ud800"
    escape (or a UTF-8-encoded surrogate) decodes to a lone surrogate, which no answer, CSV row
    or log line can be written with. Iterative: a body may nest as deep as the parser allows."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
            texts: Iterable[str] = item.keys()
        elif isinstance(item, list):
            stack.extend(item)
            continue
        elif isinstance(item, str):
            texts = (item,)
        else:
            continue
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ClientError(400, f"the body holds invalid text {text[:40]!r}: a lone "
                                       "surrogate (such as \\ud800) is not a character") from None


def _whole(text: str, name: str) -> int:
    """int(text) of a whole number, refusing one with more than MAX_DIGITS significant digits:
    none of ours needs as many, and Python refuses to convert more than 4,300 (a ValueError)."""
    text = text.strip()
    digits = text.lstrip("+-").lstrip("0") or "0"  # int() counts leading zeros, too
    if len(digits) > MAX_DIGITS:
        raise ClientError(400, f"{name} {text[:40]!r}... is out of range: more than "
                               f"{MAX_DIGITS} digits")
    return -int(digits) if text.startswith("-") else int(digits)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is too large a number")
    return value


def _one(query: dict, name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise ClientError(400, f"give {name} once, not {len(values)} times")
    return values[0]


@overload
def _limit(query: dict, *, default: int, maximum: int | None = None) -> int: ...


@overload
def _limit(query: dict, *, default: None, maximum: int | None = None) -> int | None: ...


def _limit(query: dict, *, default: int | None, maximum: int | None = None) -> int | None:
    text = _one(query, "limit")
    if text is None:
        return default
    if not _WHOLE.match(text.strip()):
        raise ClientError(400, f"limit must be a whole number, got {text[:40]!r}")
    value = _whole(text, "limit")
    if value < 0:
        raise ClientError(400, f"limit must not be negative, got {value}")
    if maximum is not None and value > maximum:
        raise ClientError(400, f"limit must be at most {maximum} (page with from), got {value}")
    return value


def _flag(query: dict, name: str) -> bool:
    text = _one(query, name)
    if text is None:
        return False
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ClientError(400, f"{name} must be true or false, got {text[:40]!r}")
