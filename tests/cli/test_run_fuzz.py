"""pvsim-run's flags, every one of them, with hostile values: the run ends 0, or refuses the
flags (2) or the config (78) in one line on stderr, never with a traceback (issue 18: --days
100000000, --date 9999-12-31, 1969-12-31, 0001-01-01, and 1970-01-01 in Asia/Tokyo were
tracebacks, exit 1; --meters 10^11 ate the memory).

The property test calls pvsim-run's main in process (fast: a refused flag costs microseconds, a
run of a few days at hour steps a fraction of a second); a few subprocess runs check the exit
codes and stderr as a shell sees them.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from tests.support.paths import ROOT
from pvsim.cli import run
from pvsim.model.clock import SimClock
from pvsim.run import simulation

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
LOG_LINE = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
HUGE = "9" * 5000

# Each flag of pvsim-run with values valid, then hostile. The valid ones keep a run short (days
# at hour steps, fleets of a few meters, a paced run a billion times real time); the hostile
# ones are the edges: out of range, out of the calendar, huge, empty, not numbers, control
# characters, paths that cannot be written. Paths are relative: the test runs in a tmp dir.
VALUES: dict[str, tuple[list[str], list[str]] | None] = {
    "--accelerated": None, "--json": None, "-v": None, "--verbose": None,
    "--speed": (["1e9", "864000"],
                ["0", "-1", "nan", "inf", "-inf", "1e309", "1e-400", "x", "", HUGE, "0x10"]),
    "--date": (["2026-06-21", "2024-02-29", "2026-03-29", "2026-10-25", "1970-01-02",
                "9999-12-28", "20260621"],
               ["9999-12-29", "9999-12-30", "9999-12-31", "1970-01-01", "1969-12-31",
                "0001-01-01", "2026-02-30", "2026-13-01", "22/06/2026", "", "x" * 5000,
                "2026-06-21T00:00", "\x00"]),
    "--days": (["1", "2", "3", " 2 ", "٣"],
               ["0", "-1", "100000000", "2921940", HUGE, "1.5", "x", "", "²"]),
    "--year": (["2026", "1971", "9998", "٢٠٢٦"], ["1970", "9999", "0", "-2026", "²", HUGE, ""]),
    "--step": (["3600", "7919", "86400", "99999999999999999999", "1_000_000"],
               ["0", "-5", "x", "", HUGE, "1e3"]),
    "--timezone": (["UTC", "Asia/Tokyo", "Pacific/Kiritimati", "America/New_York",
                    "Etc/GMT+12", "Europe/Madrid"],
                   ["Nowhere/Land", "", "../etc/passwd", "/etc/passwd", "Europe/", "UTC\x00",
                    "x" * 5000, "Europe"]),
    "--seed": (["0", "-1", "42", "9" * 40], ["9" * 41, "x", "1e3", HUGE, ""]),
    "--meters": (["1", "3", "11"], ["0", "-1", "10000001", "100000000000", "x", HUGE]),
    "--shards": (["1", "2", "4"], ["0", "1001", "5000", "x", HUGE]),
    "--jobs": (["1", "2", "64"], ["0", "-1", "x", HUGE]),
    "--output": (["out", "out/deeper", "a\nb"], ["", "\x00", "a-file/out", "x" * 300, "a-file"]),
    "--config": (["good.yaml"], ["missing.yaml", ".", "bomb.yaml", "twice.yaml", "deep.yaml",
                                 "huge-int.yaml", "", "\x00"]),
    "--plot": (["p.png"], ["", "\x00", "a-file/p.png"]),
    "--broker": (["none", "rabbitmq"], ["kafka", "", "NONE"]),
    "--version": None, "--help": None,
}
CONFIGS = {
    "good.yaml": "timezone: Europe/Madrid\npricing: {currency: GBP}\n",
    "bomb.yaml": "log_level: [&a [x,x,x,x,x,x,x,x,x], " + ", ".join(
        f"&a{i} [" + ",".join(["*a" if i == 0 else f"*a{i - 1}"] * 9) + "]" for i in range(9))
    + "]\n",
    "twice.yaml": "pv:\n  model: chart\n  model: clearsky\n",
    "deep.yaml": "meter: " + "[" * 5000 + "]" * 5000 + "\n",
    "huge-int.yaml": "meter:\n  seed: " + HUGE + "\n",
}


@st.composite
def argument_vectors(draw) -> list[str]:
    """Up to six of the real flags with their values (a hostile one in three), now and then a
    value missing, a flag no one knows or arbitrary text."""
    argv: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 19))
        if kind == 0:
            argv.append(draw(st.sampled_from(["--nope", "-x", "foo", "--", "--date=", "-",
                                              "--accel"])))
        elif kind == 1:
            argv.append(draw(st.text(max_size=12)))
        else:
            flag = draw(st.sampled_from(sorted(VALUES)))
            argv.append(flag)
            values = VALUES[flag]
            if values is not None and (kind != 2 or draw(st.booleans())):  # 1 in 36: no value
                valid, hostile = values
                argv.append(draw(st.sampled_from(hostile if kind % 3 == 0 else valid)))
    return argv


def call(argv: list[str]) -> tuple[int, str]:
    """pvsim-run's main in process: its exit status and stderr (argparse exits by SystemExit)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, err.getvalue()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    # A paced run's pacing is not this test's subject, and a drawn `--speed` `7` with `--year`
    # would pace a year at 7 times real time: the clock's sleeps are skipped (injected no-op).
    monkeypatch.setattr(simulation, "SimClock", functools.partial(SimClock, sleep=lambda s: None))
    monkeypatch.chdir(tmp_path)
    for name, text in CONFIGS.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "a-file").write_text("a file where a directory is wanted\n")
    return tmp_path


@pytest.mark.system_broker(reason="a drawn --broker rabbitmq without --config goes to pvsim-run's "
                                  "default broker, 127.0.0.1:5672, as a user's would")
@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(drawn=argument_vectors())
def test_any_flags_end_in_0_2_or_78_and_one_line(workdir, system_rabbitmq, drawn):
    """Whatever the flags: exit 0, 2 (flags) or 78 (config), or, where a flag names a path
    that cannot be written, 73 (--output, --plot) or 69 (--plot without matplotlib); an error
    is one line on stderr (after the log lines -v asks for), never a traceback. Cheap defaults
    come first (the flags drawn override them): a run stays at hour steps through no broker
    unless the flags say otherwise, and a run that is neither accelerated nor given a speed
    (real time: a day takes a day) gets a speed of a billion."""
    argv = ["--step", "3600", "--broker", "none", "--output", "out", *drawn]
    if "--accelerated" not in drawn and "--speed" not in drawn:
        argv = ["--speed", "1e9", *argv]
    code, err = call(argv)
    event(f"exit {code}")
    allowed = {0, 2, 78} | ({73} if {"--output", "--plot"} & set(drawn) else set()) \
        | ({69} if "--plot" in drawn else set())
    assert code in allowed, (argv, code, err[-500:])
    assert "Traceback" not in err, (argv, err[-2000:])
    lines = err.splitlines()
    verbose = bool({"-v", "--verbose"} & set(drawn))
    problems = [line for line in lines if not (verbose and LOG_LINE.match(line))]
    if code == 0:
        assert problems == [], (argv, err[-500:])
    else:
        assert len(problems) == 1 and lines[-1] == problems[0], (argv, err[-1000:])
        assert problems[0].startswith("pvsim-run: ") and len(problems[0]) < 10_500


@pytest.mark.parametrize("args,message", [
    (["--days", "100000000"], "not 100,000,000 days from 2026-06-21"),
    (["--date", "9999-12-31"], f"from 1970-01-01 to {run._last_day(run.ZoneInfo('UTC'))} in UTC"),
    (["--date", "9999-12-29", "--days", "2"], "not 2 days from 9999-12-29"),
    (["--date", "1969-12-31"], "not 1969-12-31"),
    (["--date", "0001-01-01"], "not 0001-01-01"),
    (["--date", "1970-01-01", "--timezone", "Asia/Tokyo"], "from 1970-01-02 to "),
    (["--seed", HUGE], "--seed: not a whole number of at most 40 digits"),
    (["--step", HUGE], "(5,000 characters)"),
    (["--meters", "100000000000"], "--meters: must be at most 10,000,000"),
    (["--shards", "5000"], "--shards: must be at most 1,000"),
    (["--timezone", "Nowhere/Land"], "--timezone: unknown time zone"),
    (["--year", "²"], "--year: not a whole number"),
    (["--nope"], "unrecognized arguments: --nope"),
])
def test_a_refused_flag_is_one_line_and_exit_2(tmp_path, args, message):
    if "--date" not in args:
        args = ["--date", "2026-06-21", *args]
    proc = subprocess.run([sys.executable, "-m", "pvsim.cli.run", "--accelerated", "--broker",
                           "none", "--timezone", "UTC", "--output", str(tmp_path), *args],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("pvsim-run: ") and message in proc.stderr
    assert len(proc.stderr) < 400 and proc.stdout == ""
    assert not any(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.parametrize("name", ["bomb.yaml", "twice.yaml", "deep.yaml", "huge-int.yaml"])
def test_a_hostile_config_is_one_line_and_exit_78(tmp_path, name):
    path = tmp_path / name
    path.write_text(CONFIGS[name])
    proc = subprocess.run([sys.executable, "-m", "pvsim.cli.run", "--accelerated", "--broker",
                           "none", "--config", str(path), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 78, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"pvsim-run: {path}: ")
    assert len(proc.stderr) < 300 and "Traceback" not in proc.stderr


def test_the_last_days_readings_can_carry_are_a_run(workdir):
    """9999-12-29 in UTC is the last day whose instants messages carry (to 9999-12-30 00:00
    UTC); in a zone west of UTC its last hours are past it, so its last day is the day before."""
    assert call(["--accelerated", "--broker", "none", "--output", "out-last", "--step", "21600",
                 "--date", "9999-12-29", "--timezone", "UTC", "--json"])[0] == 0
    assert run._last_day(run.ZoneInfo("America/New_York")).isoformat() == "9999-12-28"
    assert run._first_day(run.ZoneInfo("America/New_York")).isoformat() == "1970-01-01"
    assert run._first_day(run.ZoneInfo("Asia/Tokyo")).isoformat() == "1970-01-02"
