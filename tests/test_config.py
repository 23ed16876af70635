import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pvsim import config
from pvsim.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "pvsim.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(path) in str(err.value)
    return err.value


def test_shipped_config_loads_and_documents_every_key():
    cfg = config.load(ROOT / "config" / "pvsim.yaml")
    assert cfg.timezone == "Europe/Madrid"
    assert cfg.meter.id == ("smart-meter-0",)
    text = (ROOT / "config" / "pvsim.yaml").read_text()
    for section in ("broker", "meter", "pv", "output", "pricing", "limits", "api", "fleet"):
        for f in dataclasses.fields(getattr(config, section.capitalize() + "Config")):
            assert f"{f.name}:" in text, f"{section}.{f.name} is not documented"


def test_empty_file_gives_defaults(tmp_path):
    assert config.load(write(tmp_path, "")) == config.Config()


def test_a_section_with_every_key_commented_out_gives_its_defaults(tmp_path):
    assert config.load(write(tmp_path, "api:\n  # token_file: /etc/pvsim/api-token\nmeter:\n")) \
        == config.Config()


def test_keys_other_parts_rely_on(tmp_path):
    cfg = config.load(write(tmp_path, """
timezone: America/New_York
broker: {url: "amqp://u:p@h:5673/v", exchange: e, queue: q}
meter: {id: [a, b], seed: 9, model: uniform}
pv: {peak_kw: 5, noise: 0.2}
output: {directory: /tmp/x}
"""))
    assert (cfg.timezone, cfg.broker.exchange, cfg.broker.queue) == ("America/New_York", "e", "q")
    assert cfg.meter.id == ("a", "b") and cfg.meter.seed == 9 and cfg.meter.model == "uniform"
    assert cfg.pv.peak_kw == 5.0 and cfg.pv.noise == 0.2 and cfg.output.directory == "/tmp/x"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text,key,problem", [
    ("timezone: [", "", "malformed YAML: line"),
    ("- a\n- b\n", "(top level)", "expected a mapping"),
    ("colour: red", "colour", "unknown key"),
    ("meter: {idd: x}", "meter.idd", "unknown key"),
    ("meter: 3", "meter", "expected a mapping"),
    ("meter: {seed: abc}", "meter.seed", "expected an integer"),
    ("meter: {seed: 1.5}", "meter.seed", "expected an integer"),
    ("meter: {model: random}", "meter.model", "must be one of"),
    ("meter: {id: []}", "meter.id", "non-empty list"),
    ("meter: {id: [a, a]}", "meter.id", "appears twice"),
    ("meter: {listen: 'localhost'}", "meter.listen", "host:port"),
    ("meter: {listen: '127.0.0.1:99999'}", "meter.listen", "host:port"),
    ("meter: {buffer_size: 0}", "meter.buffer_size", "at least 1"),
    ("pv: {peak_kw: 0}", "pv.peak_kw", "greater than 0"),
    ("pv: {peak_kw: .nan}", "pv.peak_kw", "expected a number"),
    ("pv: {noise: 2}", "pv.noise", "at most 1"),
    ("pv: {noise: yes}", "pv.noise", "expected a number"),
    ("timezone: Mars/Olympus", "timezone", "unknown time zone"),
    ("timezone: ''", "timezone", "non-empty string"),
    ("log_level: LOUD", "log_level", "must be one of"),
    ("broker: {url: 'http://x'}", "broker.url", "amqp://"),
    ("broker: {urls: ['amqp://a:5672/', 'http://b']}", "broker.urls[1]", "amqp://"),
    ("broker: {urls: ['amqp://a:5672/', 'amqp://a:5672/']}", "broker.urls", "appears twice"),
    ("broker: {url: 'amqp://a:5672/', urls: ['amqp://b:5672/']}", "broker.urls", "not both"),
    ("broker: {prefetch: -1}", "broker.prefetch", "at least 1"),
    ("broker: {queue_type: stream}", "broker.queue_type", "must be one of"),
    ("broker: {queue_type: classic}\nfleet: {shards: 4}", "broker.queue_type", "quorum"),
    ("broker: {delivery_limit: 0}", "broker.delivery_limit", "at least 1"),
    ("fleet: {shards: 0}", "fleet.shards", "at least 1"),
    ("fleet: {shards: 1001}", "fleet.shards", "at most 1000"),
    ("fleet: {shards: 4, instances: 2, instance: 2}", "fleet.instance", "below fleet.instances"),
    ("fleet: {shards: 2, instances: 3}", "fleet.instances", "at most fleet.shards"),
    ("meter: {id: [a], count: 5}", "meter.count", "not both"),
    ("meter: {count: -1}", "meter.count", "at least 0"),
    ("output: {directory: null}", "output.directory", "non-empty string"),
    ("pricing: {accounts: {m: nope}}", "pricing.accounts.m", "unknown plan"),
    ("pricing: {plans: [{id: p, supplier: s}]}", "pricing.plans[0].unit_rate", "missing"),
    ("pricing: {plans: [{id: p, supplier: s, unit_rate: 1, peak_multipliers: {funday: 2}}], accounts: {}}",
     "pricing.plans[0].peak_multipliers.funday", "not a weekday"),
])
def test_every_mistake_names_file_key_and_problem(tmp_path, text, key, problem):
    err = error_of(tmp_path, text)
    assert err.key == key
    assert problem in err.problem


def test_meter_count_generates_ids_and_a_fleet_takes_quorum_queues():
    cfg = config.parse("meter: {count: 3}\nfleet: {shards: 4, instances: 2, instance: 1}")
    assert cfg.meter.id == ("meter-000001", "meter-000002", "meter-000003")
    assert config.queue_type(cfg.broker, cfg.fleet) == "quorum"
    one = config.parse("broker: {queue_type: quorum}")
    assert config.queue_type(one.broker, one.fleet) == "quorum"
    assert config.queue_type(config.Config().broker, config.Config().fleet) == "classic"


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read: Is a directory"):
        config.load(tmp_path)


@pytest.mark.parametrize("module", ["pvsim.cli.run"])
def test_command_line_exits_78_with_one_line_and_no_traceback(tmp_path, module):
    path = write(tmp_path, "meter:\n  seed: twelve\n")
    proc = subprocess.run([sys.executable, "-m", module, "--accelerated", "--config", str(path)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=60)
    assert proc.returncode == 78
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and "meter.seed" in lines[0] and "integer" in lines[0]
    assert "Traceback" not in proc.stderr


def test_the_meter_cannot_read_more_than_pvsim_accepts(tmp_path):
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, "meter:\n  max_w: 20000\nlimits:\n  max_power_w: 10000\n"))
    assert err.value.key == "meter.max_w" and "limits.max_power_w" in err.value.problem
    cfg = config.load(write(tmp_path, "meter:\n  max_w: 35000\n"))
    assert (cfg.meter.max_w, cfg.limits.max_power_w) == (35000.0, 10_000_000.0)
