"""Logging for every entry point: one line per event on stderr, never a credential.

Under systemd the journal adds the timestamp and unit, so lines carry only level, logger and
message. A filter masks any password in a URL that reaches a log line, whoever logged it
(pvsim redacts its own; the filter guards what libraries might print).
"""

from __future__ import annotations

import logging
import re
import sys

_CREDENTIALS = re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+@")


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***; never fails, whatever the
    text (a URL too broken to parse is still masked)."""
    return _CREDENTIALS.sub(r"\1***@", text) if "@" in text else text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pika logs every connection step, and each failed attempt as an ERROR with a traceback;
    # pvsim reports those events itself in one line each, so pika speaks only at DEBUG.
    logging.getLogger("pika").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.CRITICAL)
