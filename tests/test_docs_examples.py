"""Every example in the README, in docs/ and in the man pages runs as written (issue 18, section 9;
issue 21, section 5), every relative link in the README and docs/ leads somewhere, and each man page
documents the options its program takes.

The examples are read from the documents themselves: the Markdown documents' fenced blocks and the
man pages' `.nf`/`.fi` (and `.EX`/`.EE`) blocks. Each is recognised by what it is and checked
accordingly:

- `curl` commands: sent, with bash, to a real pvsim-pv started for the test; only the host:port of
  the documented daemon (`localhost:9762`, the shipped `pv.listen`) is rewritten to the test
  daemon's. Each answer must be JSON, not a problem body, and make sense for its endpoint (the
  POST echoed; costs not zero once readings are stored).
- `pvsim-run` invocations (`bin/pvsim-run` or `pvsim-run`, with `bin/` on PATH): run with bash in
  a scratch copy of the clone (its directories linked, `docs/` copied, so a documented `--plot
  docs/x.png` never overwrites the clone's file) with HOME in the scratch directory, through the
  suite's RabbitMQ. They must exit 0, and what they name must exist (`--plot`, `--output`,
  `--json`). A transcript (`$ command` followed by its output) must print what it shows: its lines
  in order and contiguous, `...` standing for lines left out, the run's timing figures aside.
- A pvsim config (YAML whose keys are config sections) must load with pvsim.config; a Prometheus
  config must pass `promtool check config`; a CSV sample must carry the header pvsim writes.
- Everything else must be listed in NOT_RUN with the reason it cannot run in a test (it installs
  the package system-wide, drives systemd, is a synopsis...). A new example that is none of the
  above fails this test until it is made runnable or listed there, and an entry of NOT_RUN that no
  longer matches an example fails it too.

A link is relative when it names no scheme: its file must exist, and a `#fragment` into a Markdown
document must be the anchor GitHub gives one of its headings.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.daemons import http_get
from tests.support.paths import ROOT
from pvsim import config
from pvsim.pipeline.csvformat import HEADER

MARKDOWN = ("README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")))
MAN_PAGES = tuple(sorted(str(p.relative_to(ROOT)) for p in (ROOT / "man").glob("*.[1-8]")))
DOCUMENTS = (*MARKDOWN, *MAN_PAGES)
DOCUMENTED_PV = re.compile(r"\b(?:localhost|127\.0\.0\.1):9762\b")  # the shipped pv.listen
PROMTOOL = shutil.which("promtool")

# Examples that cannot run in a test, by document and first line, with the reason.
NOT_RUN: dict[tuple[str, str], str] = {(document, first): reason for document, first, reason in [
    ("README.md",
     "make demo     # installs what is missing (RabbitMQ included), starts it, simulates today in seconds",
     "installs Debian packages; `make check` is the suite itself (tests/test_front_door.py runs "
     "bin/pvsim-run and make's targets)"),
    ("README.md",
     "Clock ──> MeterModel ──> Reading ──> RabbitMQ ──> PvService ──> Row ──> daily CSV (fsync, then ack)",
     "a diagram"),
    ("docs/explanation/architecture.md",
     "Clock ──> MeterModel ──> Reading ──> Transport ──> Reading ──> PvService ──> Row ──> CsvSink",
     "a diagram"),
    ("docs/contributing.md",
     "pvsim/          config and logging: what every layer reads",
     "a directory tree (tests/test_layers.py checks the layers it describes)"),
    ("docs/reference/cli.md",
     "pvsim-run --accelerated [--date YYYY-MM-DD] [--days N | --year YYYY] [--step SECONDS] [--timezone TZ]",
     "a synopsis, not a command"),
    ("docs/reference/cli.md",
     "pvsim-meter [--config FILE]     # one reading per second per meter.id, published with confirms",
     "a synopsis of the daemons, not a command (tests/daemons/ start them)"),
    ("docs/howto/install-deb.md",
     "make deb                                   # dist/pvsim_<version>_all.deb, lintian-clean",
     "builds the .deb and installs it system-wide: tests/package/test_deb_systemd.py does exactly "
     "that in a booted systemd container"),
    ("docs/howto/install-deb.md",
     "sudo systemctl restart pvsim-meter pvsim-pv",
     "restarts the installed units under systemd (tests/package/test_deb_systemd.py)"),
    ("docs/howto/upgrade.md",
     "sudo apt install ./dist/pvsim_*_all.deb",
     "upgrades the package system-wide: tests/package/test_deb_systemd.py upgrades it with the units "
     "running, in a booted systemd container"),
    ("docs/howto/replay-meter-export.md",
     "pvsim-run --accelerated --year 2026 --step 900 --config building-1.yaml",
     "needs the reader's own meter export (tests/inputs/test_models.py builds the series model from "
     "recorded files); the config of this guide loads, as a config example"),
    ("man/pvsim-meter.8",
     "# systemctl edit pvsim-meter",
     "a drop-in for the installed unit under systemd (tests/package/test_units.py checks the units)"),
    ("man/pvsim-pv.8",
     "# systemctl edit pvsim-pv",
     "a drop-in for the installed unit under systemd (tests/package/test_units.py checks the units)"),
    ("man/pvsim.yaml.5",
     "systemctl restart pvsim-meter pvsim-pv",
     "restarts the installed units under systemd (tests/package/test_deb_systemd.py)"),
    ("man/pvsim-run.1",
     "pvsim-run --accelerated --year 2026 --output ~/pvsim-2026",
     "a year at 1-second steps: 31.5 million readings, 2 GB of CSV, minutes of two CPUs "
     "(bench/bench_year.py runs it); its flags are those of the other examples"),
]}


@dataclass(frozen=True)
class Example:
    document: str
    line: int  # of the block's first line in the document
    lang: str
    text: str

    @property
    def first(self) -> str:
        return next((line.strip() for line in self.text.splitlines() if line.strip()), "")

    @property
    def key(self) -> tuple[str, str]:
        return self.document, self.first

    def __str__(self) -> str:
        return f"{self.document}:{self.line} ({self.first[:60]})"


ROFF_ESCAPES = {r"\-": "-", r"\fB": "", r"\fI": "", r"\fR": "", r"\fP": "", r"\(aq": "'",
                r"\(dq": '"', r"\&": "", r"\e": "\\"}


def unroff(line: str, where: str) -> str:
    """A line of a man page's no-fill block as the reader sees it (and would type it)."""
    out = re.sub("|".join(re.escape(e) for e in ROFF_ESCAPES), lambda m: ROFF_ESCAPES[m.group(0)], line)
    # An escape this does not know would make the command differ from the one shown.
    assert "\\" not in out.replace(ROFF_ESCAPES[r"\e"], ""), f"{where}: unknown roff escape in {line!r}"
    return out


def examples_of(document: str) -> list[Example]:
    lines = (ROOT / document).read_text(encoding="utf-8").splitlines()
    found: list[Example] = []
    start, lang, body = None, "", []
    for number, line in enumerate(lines, 1):
        if document.endswith(".md"):
            if line.startswith("```"):
                if start is None:
                    start, lang, body = number + 1, line[3:].strip(), []
                else:
                    found.append(Example(document, start, lang, "\n".join(body)))
                    start = None
                continue
        else:
            if re.match(r"\.(nf|EX)\b", line):
                start, lang, body = number + 1, "", []
                continue
            if start is not None and re.match(r"\.(fi|EE)\b", line):
                found.append(Example(document, start, lang, "\n".join(body)))
                start = None
                continue
            if start is not None:
                line = unroff(line, f"{document}:{number}")
        if start is not None:
            body.append(line)
    assert start is None, f"{document}:{start}: a block that never ends"
    return found


ALL = [ex for doc in DOCUMENTS for ex in examples_of(doc)]


# ----------------------------------------------------------------------------------------------
# What an example is


def commands(text: str) -> list[tuple[str, list[str]]]:
    """The commands of a shell block with, for a transcript (`$ command` lines), the output shown
    after each. A command continues over lines while a quote is open or a line ends in `\\`."""
    lines = text.splitlines()
    transcript = any(line.startswith("$ ") for line in lines)
    result: list[tuple[str, list[str]]] = []
    pending = ""
    for line in lines:
        if transcript and not pending and not line.startswith("$ "):
            if result:
                result[-1][1].append(line)
            continue
        if transcript and not pending:
            line = line[2:]
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        if pending.endswith("\\"):
            continue
        result.append((pending, []))
        pending = ""
    assert not pending, f"a command never ends: {pending!r}"
    return result


def program(command: str) -> str:
    """The program a simple command runs; "" for a pipeline, a list or a redirection, which this
    test does not know how to check."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    words = list(lexer)
    if not words or any(set(w) <= set("();<>|&") for w in words):
        return ""
    return Path(words[0]).name


def kind(ex: Example) -> str | None:
    """What the test does with an example, or None when it is not one it knows how to run."""
    if ex.key in NOT_RUN:
        return "not run"
    if ex.first == HEADER:
        return "csv"
    if ex.lang in ("", "sh", "shell", "console", "bash"):
        try:
            cmds = commands(ex.text)
        except (AssertionError, ValueError):
            cmds = []
        progs = {program(c) for c, _ in cmds}
        if cmds and progs == {"curl"}:
            return "curl"
        if cmds and progs == {"pvsim-run"} and \
                all(c.split()[0] in ("pvsim-run", "bin/pvsim-run") for c, _ in cmds):
            return "pvsim-run"
    if ex.lang in ("", "yaml", "yml"):
        try:
            doc = yaml.safe_load(ex.text)
        except yaml.YAMLError:
            return None
        if isinstance(doc, dict) and "scrape_configs" in doc:
            return "prometheus"
        sections = {f.name for f in config.Config.__dataclass_fields__.values()}
        if isinstance(doc, dict) and doc and set(doc) <= sections:
            return "config"
    return None


def of_kind(name: str) -> list[Example]:
    return [ex for ex in ALL if kind(ex) == name]


def test_every_example_is_run_or_listed_with_the_reason_it_is_not():
    unknown = [str(ex) for ex in ALL if kind(ex) is None]
    assert not unknown, ("examples this test neither runs nor lists in NOT_RUN (make them runnable, "
                         "or list them with the reason they cannot run):\n" + "\n".join(unknown))
    stale = sorted(set(NOT_RUN) - {ex.key for ex in ALL})
    assert not stale, f"NOT_RUN lists examples no document has any more: {stale}"
    # The documents hold examples of every kind run below: the parsing has not lost them.
    kinds = {kind(ex) for ex in ALL}
    assert {"curl", "pvsim-run", "config", "prometheus", "csv"} <= kinds, kinds


def test_a_new_example_that_cannot_run_is_not_let_through():
    """What the rule above rests on: a block this test cannot run is none of the kinds it runs."""
    for text in ("sudo systemctl enable --now pvsim-pv", "curl -s localhost:9762/healthz | jq .",
                 "pvsim-run --accelerated && rm -r pvsim-output", "apt install ./dist/pvsim_*_all.deb",
                 "meter:\n  unknown_section: 1\nnot_a_section: 2"):
        assert kind(Example("README.md", 1, "", text)) is None, text


# ----------------------------------------------------------------------------------------------
# curl against a running pvsim-pv


def check_answer(command: str, answer: object, posted: dict[str, object], get) -> None:
    """What a documented call must answer, by endpoint."""
    url = next(w for w in shlex.split(command) if "://" in w or re.match(r"[\w.]+:\d+/", w))
    path = re.sub(r"^(\w+://)?[^/]+", "", url).split("?")[0]
    assert not (isinstance(answer, dict) and "status" in answer and "title" in answer), \
        f"{command}\nanswered a problem: {answer}"
    if path == "/readings/store":
        body = json.loads(next(w for w in shlex.split(command) if w.lstrip().startswith("{")))
        assert answer == body, f"{command}\ndid not echo the readings: {answer}"
        posted[body["smartMeterId"]] = body
    elif path.startswith("/readings/read/"):
        assert isinstance(answer, list) and answer, f"{command}\nno readings: {answer}"
    elif path.startswith("/price-plans/compare-all/"):
        costs = [v for plan in answer["pricePlanComparisons"] for v in plan.values()]
        assert costs and all(c > 0 for c in costs), f"{command}\ncosts: {answer}"
    elif path.startswith("/price-plans/recommend/"):
        # With PV a plan may well cost nothing (PV covers the load): the figures must be those
        # compare-all gives for the same meter, whose costs without PV are not zero.
        ranking = answer["recommendations"] if isinstance(answer, dict) else answer
        status, text = get(path.replace("/recommend/", "/compare-all/"))
        plans = {p["pricePlanId"]: p for p in json.loads(text)["pricePlans"]}
        assert status == 200 and all(p["cost"] > 0 for p in plans.values()), f"{command}\ncompare-all: {text}"
        figure = "costWithPv" if re.search(r"[?&]withPv=true\b", url) else "cost"
        shown = [(plan, cost) for entry in ranking for plan, cost in entry.items()]
        assert shown and all(cost == plans[plan][figure] for plan, cost in shown), \
            f"{command}\nanswered {answer}, compare-all says {plans}"
    else:
        raise AssertionError(f"{command}\nan endpoint this test has no check for: {path}")
    if path != "/readings/store" and path.rsplit("/", 1)[-1] not in posted:
        raise AssertionError(f"{command}\nasks about a meter no example has posted readings for")


@pytest.mark.parametrize("ex", of_kind("curl"), ids=str)
def test_curl_example_against_a_running_pvsim_pv(ex, pvsim_config, daemons):
    daemons.start("pv", pvsim_config)
    posted: dict[str, object] = {}
    for command, _ in commands(ex.text):
        assert DOCUMENTED_PV.search(command), f"{ex}: {command} does not call the documented pvsim-pv"
        rewritten = DOCUMENTED_PV.sub(f"127.0.0.1:{pvsim_config.pv_port}", command)
        proc = subprocess.run(["bash", "-c", rewritten], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"{ex}: {command}\nexit {proc.returncode}: {proc.stderr}"
        try:
            answer = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"{ex}: {command}\nanswered no JSON: {proc.stdout!r}") from None
        check_answer(command, answer, posted, lambda path: http_get(pvsim_config.pv_port, path))


# ----------------------------------------------------------------------------------------------
# pvsim-run in a scratch copy of the clone


def scratch_clone(base: Path) -> Path:
    """A directory that looks like the clone to a command run in it: its directories linked,
    docs/ copied (examples write their plots there), nothing written into the real clone."""
    clone = base / "clone"
    clone.mkdir()
    for entry in ROOT.iterdir():
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if entry.name == "docs":
            shutil.copytree(entry, clone / "docs")
        else:
            (clone / entry.name).symlink_to(entry)
    (base / "home").mkdir()
    return clone


TIMING = re.compile(r" in [\d.]+ s \([\d,]+ readings/s\)")


def shows(expected: list[str], actual: list[str]) -> str | None:
    """None when `actual` prints what the transcript shows, else what differs. The transcript's
    lines must come in order and contiguous from the first line, `...` standing for any lines."""
    norm = lambda line: TIMING.sub(" in (time)", line.rstrip())  # noqa: E731
    segments: list[list[str]] = [[]]
    for line in expected:
        if line.strip() == "...":
            segments.append([])
        else:
            segments[-1].append(norm(line))
    got = [norm(line) for line in actual]
    at = 0
    for i, segment in enumerate(segments):
        if not segment:
            continue
        n = len(segment)
        starts = [at] if i == 0 else range(at, len(got) - n + 1)
        found = next((s for s in starts if got[s:s + n] == segment), None)
        if found is None:
            return f"not printed (from line {at + 1} of the output on):\n" + "\n".join(segment)
        at = found + n
    return None


@pytest.mark.system_broker(reason="the README's commands run as written, with pvsim-run's default "
                                  "broker, 127.0.0.1:5672")
@pytest.mark.parametrize("ex", of_kind("pvsim-run"), ids=str)
def test_pvsim_run_example_runs_as_written(ex, system_rabbitmq, tmp_path):
    clone = scratch_clone(tmp_path)
    env = dict(os.environ, HOME=str(tmp_path / "home"), PATH=f"{ROOT / 'bin'}:{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    for command, transcript in commands(ex.text):
        proc = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"{ex}: {command}\nexit {proc.returncode}: {proc.stderr[-2000:]}"
        words = shlex.split(command)

        def flag(name: str) -> Path | None:
            """Where the command's flag points, as bash saw it (~ is the scratch HOME)."""
            if name not in words:
                return None
            value = words[words.index(name) + 1]
            return clone / (env["HOME"] + value[1:] if value.startswith("~/") else value)

        output = flag("--output") or clone / "pvsim-output"
        assert sorted(output.glob("pvsim-*.csv")), f"{ex}: {command}\nno CSV in {output}"
        if "--json" in words:
            json.loads(proc.stdout)
        if flag("--plot"):
            assert flag("--plot").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{ex}: no plot"
        if transcript:
            differs = shows(transcript, proc.stdout.splitlines())
            assert differs is None, f"{ex}: {command}\n{differs}\n--- printed:\n{proc.stdout}"


# ----------------------------------------------------------------------------------------------
# Configs and samples


@pytest.mark.parametrize("ex", of_kind("config"), ids=str)
def test_config_example_loads(ex):
    assert isinstance(config.parse(ex.text, str(ex)), config.Config)  # ConfigError: one line


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
@pytest.mark.parametrize("ex", of_kind("prometheus"), ids=str)
def test_prometheus_example_passes_promtool(ex, tmp_path):
    path = tmp_path / "prometheus.yml"
    path.write_text(ex.text)
    proc = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"{ex}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("ex", of_kind("csv"), ids=str)
def test_csv_sample_has_the_columns_pvsim_writes(ex):
    header, *rows = ex.text.splitlines()
    assert header == HEADER
    for row in rows:
        assert len(row.split(",")) == len(HEADER.split(",")), f"{ex}: {row}"


# ----------------------------------------------------------------------------------------------
# Relative links in the Markdown documents

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def unfenced(document: str | Path) -> list[tuple[int, str]]:
    """The document's lines outside fenced blocks, numbered."""
    out, fenced = [], False
    for number, line in enumerate((ROOT / document).read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            out.append((number, line))
    return out


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    return {anchor(line.lstrip("#")) for _, line in unfenced(document) if re.match(r"#{1,6} ", line)}


def broken_links(document: str) -> list[str]:
    broken = []
    for number, line in unfenced(document):
        # A link in inline code is an example shown, not one the reader follows.
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # a URL: not checked here (no network in a test)
            path, _, fragment = target.partition("#")
            resolved = ((ROOT / document).parent / path).resolve() if path else ROOT / document
            where = f"{document}:{number}: {target}"
            if not resolved.exists():
                broken.append(f"{where}: no such file")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{where}: no heading with that anchor in {resolved.relative_to(ROOT)}")
    return broken


# docs/reference/config.md is generated from the config schema (python3 -m pvsim.config --reference)
# and committed: a link to it is checked like any other.
@pytest.mark.parametrize("document", MARKDOWN)
def test_every_relative_link_resolves(document):
    broken = broken_links(document)
    assert not broken, "links that lead nowhere:\n" + "\n".join(broken)


def test_a_broken_link_is_caught(tmp_path, monkeypatch):
    """What the test above rests on: a missing file and a missing heading are both reported."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# Title `x`: here\n\n[ok](#title-x-here) [gone](b.md) [ok too](a.md)\n"
                                   "[no anchor](a.md#nowhere) `[code](c.md)` [web](https://example.org)\n")
    broken = broken_links("a.md")
    assert len(broken) == 2 and "b.md: no such file" in broken[0] and "nowhere" in broken[1], broken


# ----------------------------------------------------------------------------------------------
# The man pages document the options the programs take

OPTION = re.compile(r"(?<![\w-])(--?[a-z][a-z-]*)")


def help_options(program: str) -> set[str]:
    """The options `bin/PROGRAM --help` lists (argparse's option lines)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(ROOT / "bin" / program), "--help"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("options:", 1)[1].splitlines()
    specs = [re.split(r"\s{2,}", line.strip())[0] for line in lines if re.match(r"\s{2}-", line)]
    return {option for spec in specs for option in OPTION.findall(spec)}


def man_options(page: str) -> set[str]:
    """The options the OPTIONS section of a man page gives a paragraph (`.TP` then the tag)."""
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    start = lines.index(".SH OPTIONS")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(".SH "))
    tags = [unroff(lines[i + 1], page) for i in range(start, end) if lines[i] == ".TP"]
    return {option for tag in tags for option in OPTION.findall(re.sub(r"^\.\w+ ", "", tag))}


@pytest.mark.parametrize("program,page", [("pvsim-run", "man/pvsim-run.1"),
                                          ("pvsim-meter", "man/pvsim-meter.8"),
                                          ("pvsim-pv", "man/pvsim-pv.8")])
def test_man_page_documents_the_programs_options(program, page):
    documented, taken = man_options(page) | {"-h", "--help"}, help_options(program)
    assert taken - documented == set(), f"{page} does not document {sorted(taken - documented)}"
    assert documented - taken == set(), f"{page} documents options {program} does not take: " \
        f"{sorted(documented - taken)}"
