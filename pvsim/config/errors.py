"""How a configuration problem is said: one short line naming the file, the key and the problem.

Whatever a file holds (megabytes of text, control characters, an alias bomb), the line quotes at
most a few dozen characters of it: the entry points print it on stderr and exit 78.
"""

from __future__ import annotations

import argparse
import os
import typing
from typing import Any

SHOWN_CHARS = 60           # of a value quoted in an error line
MAX_ERROR_CHARS = 1000     # an error line, whatever it quotes
USAGE_ERROR_CHARS = 300


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


def join_key(prefix: str, name: object) -> str:
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


def describe(value: Any) -> str:
    """What a file gave, for "expected X, got Y": its kind, and the value when it is short."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "a list"
    kind = {str: "the string", bool: "the boolean"}.get(type(value))
    return f"{kind} {shown(value)}" if kind else shown(value)
