"""What every reader of a data file shares: the error that names file and line, and opening."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pvsim.config import ConfigError


class DataFileError(ConfigError):
    """A data file (weather, series, profile) that cannot be used, phrased for its author:
    `FILE: line N: problem`. A ConfigError, so it exits 78 at startup like a bad config."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        super().__init__(str(path), f"line {line}" if line else "", problem)
        self.line = line


def lines(path: str | Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(line number, text without its line end) of a text file; a file that cannot be read is a
    DataFileError. Weather files are often Latin-1: pass encoding="latin-1" for them."""
    try:
        with open(path, encoding=encoding, newline="") as f:
            for number, text in enumerate(f, 1):
                yield number, text.rstrip("\r\n")
    except FileNotFoundError:
        raise DataFileError(path, None, "file not found") from None
    except IsADirectoryError:
        raise DataFileError(path, None, "is a directory, not a file") from None
    except PermissionError:
        raise DataFileError(path, None, "permission denied") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(path, None, f"not {encoding} text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataFileError(path, None, f"cannot read: {exc.strerror or exc}") from None


def number(text: str, path: str | Path, line: int, what: str,
           lo: float | None = None, hi: float | None = None) -> float:
    """A finite number within [lo, hi], or a DataFileError naming what it should have been."""
    try:
        value = float(text)
    except ValueError:
        raise DataFileError(path, line, f"{what} is not a number: {text.strip()[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise DataFileError(path, line, f"{what} is not a finite number: {text.strip()!r}")
    too_low, too_high = lo is not None and value < lo, hi is not None and value > hi
    if too_low or too_high:
        if lo is not None and hi is not None:
            where = f"outside [{lo:g}, {hi:g}]"
        else:
            where = f"below {lo:g}" if too_low else f"above {hi:g}"
        raise DataFileError(path, line, f"{what} {value:g} is {where}")
    return value
