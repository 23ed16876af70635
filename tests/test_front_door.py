"""What a new user meets first, from a clone: the programs in bin/, `make help`, and a clear word
when RabbitMQ will not start."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from pvsim import __version__

PROGRAMS = ("pvsim-run", "pvsim-meter", "pvsim-pv")


@pytest.mark.parametrize("prog", PROGRAMS)
def test_each_program_runs_from_the_clone_in_any_directory(prog, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(ROOT / "bin" / prog), "--version"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{prog} {__version__}"


def test_bin_pvsim_run_simulates_a_day(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(ROOT / "bin" / "pvsim-run"), "--accelerated", "--broker", "none",
                           "--date", "2024-06-21", "--step", "600", "--config", "none.yaml"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78 and "none.yaml: file not found" in proc.stderr  # --config must exist
    (tmp_path / "none.yaml").write_text("timezone: Europe/Madrid\n")
    proc = subprocess.run([str(ROOT / "bin" / "pvsim-run"), "--accelerated", "--broker", "none",
                           "--date", "2024-06-21", "--step", "600", "--config", "none.yaml"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    csv = tmp_path / "pvsim-output" / "pvsim-2024-06-21.csv"
    assert len(csv.read_text().splitlines()) == 1 + 144
    assert "recommended plan" in proc.stdout


def test_the_readmes_two_commands_are_make_targets_make_help_lists():
    """The README's first block is the front door: `make demo` (set up, run the main job) and
    `make check` (set up, run the tests). Both must be targets that `make help` lists, so a
    renamed target fails here before it fails a newcomer."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```", 2)[1]
    commands = [line.split("#")[0].split() for line in block.splitlines() if line.strip()]
    assert [words[:2] for words in commands] == [["make", "demo"], ["make", "check"]], block
    proc = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert {"demo", "check"} <= listed, proc.stdout


def test_the_readme_stays_a_front_door():
    """What pvsim is, the two commands, a tour and where to read on (issue 21, section 5): the rest
    lives in docs/, one page per purpose. A README that grows past this is taking docs/' place."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move the detail into docs/"
    assert "(docs/README.md)" in "\n".join(lines), "the README must lead to the documentation"


def test_make_help_lists_targets_programs_and_manuals():
    proc = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    for word in ("demo", "check", "deb", *(f"bin/{p}" for p in PROGRAMS)):
        assert word in proc.stdout
    for page in (ROOT / "man").glob("*.[1-8]"):
        assert f"man -l man/{page.name}" in proc.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="scripts/ensure-rabbitmq uses sudo when not root")
def test_ensure_rabbitmq_shows_the_brokers_own_error_and_the_command(tmp_path):
    """A broker that crashes at start-up: the script says how it started it and what the broker
    said (its output and its log), instead of pointing at an empty directory. Fake rabbitmq-server
    and rabbitmqctl stand in, so the machine's own broker is not touched."""
    fakes = tmp_path / "bin"
    fakes.mkdir()
    (fakes / "rabbitmq-server").write_text(
        "#!/bin/sh\necho 'BOOT FAILED'\necho 'Exception during startup: {badmatch,eaddrinuse}'\nexit 1\n")
    (fakes / "rabbitmqctl").write_text(
        "#!/bin/sh\necho \"Error: unable to perform an operation on node 'rabbit@fake'\" >&2\nexit 69\n")
    for f in fakes.iterdir():
        f.chmod(0o755)
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "rabbit@fake.log").write_text("2026-11-22 [error] <0.230.0> crash in rabbit_boot_steps\n")
    env = dict(os.environ, PATH=f"{fakes}:{os.environ['PATH']}", PVSIM_RABBITMQ_WAIT="2",
               RABBITMQ_LOG_BASE=str(logs))
    proc = subprocess.run([str(ROOT / "scripts" / "ensure-rabbitmq")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    err = proc.stderr
    started_with = "systemctl start rabbitmq-server" if Path("/run/systemd/system").is_dir() \
        else "rabbitmq-server -detached"
    assert f"It was started with: {started_with}" in err
    if started_with.startswith("rabbitmq-server"):
        assert "BOOT FAILED" in err and "eaddrinuse" in err
    assert "unable to perform an operation on node 'rabbit@fake'" in err
    assert "crash in rabbit_boot_steps" in err


def test_make_clean_removes_everything_git_ignores(tmp_path):
    """Whatever the targets and the programs leave in a clone is git-ignored; `make clean` removes
    all of it (dist/ from `make deb`, .hypothesis/ from `make check` included), and nothing else.
    Run on a scratch copy of the Makefile with one file for each .gitignore entry."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    keep = {tmp_path / "Makefile", tmp_path / "debian" / "rules", tmp_path / "pvsim" / "config.py"}
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    made = []
    for line in (ROOT / ".gitignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        relative = pattern.strip("/").replace("*", "x")
        # Python's caches appear in every package; everything else at the top of the clone.
        for where in ([tmp_path, tmp_path / "pvsim"] if pattern == "__pycache__/" else [tmp_path]):
            target = where / relative
            if pattern.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                (target / "leftover").touch()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
            made.append(target)
    proc = subprocess.run(["make", "-s", "clean"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    left = [str(p.relative_to(tmp_path)) for p in made if p.exists()]
    assert not left, f"make clean left what .gitignore names: {left}"
    assert all(p.exists() for p in keep), "make clean removed a source file"
