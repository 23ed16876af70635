import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


# --- issue 18: the shipped file means what it says; what no file can do ------------------------

def test_every_key_the_shipped_file_sets_is_the_value_the_programs_run_with():
    """Walk the shipped file's YAML nodes (every key as written, a repeated one too: YAML's
    own loader would keep the last silently) and compare each value with the loaded Config.
    The fleet commit had put `fleet:` inside `pv:`, so the plant's keys sat under an `output:`
    that a second `output:` replaced: an administrator's `model: clearsky` there did nothing."""
    path = ROOT / "config" / "pvsim.yaml"
    cfg = config.load(path)
    root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    sections = {k.value for k, _ in root.value}
    assert sections == {f.name for f in dataclasses.fields(config.Config)} - {"source"}
    checked = []

    def same(node, value, key):
        if isinstance(node, yaml.MappingNode):
            assert dataclasses.is_dataclass(value) or isinstance(value, dict), key
            assert node.value or not dataclasses.is_dataclass(value), f"{key} is empty"
            for k, v in node.value:
                assert (hasattr(value, k.value) if dataclasses.is_dataclass(value)
                        else k.value in value), f"{key}.{k.value} is set but is no key of {key}"
                same(v, getattr(value, k.value) if dataclasses.is_dataclass(value)
                     else value[k.value], f"{key}.{k.value}")
        elif isinstance(node, yaml.SequenceNode):
            assert isinstance(value, tuple) and len(value) == len(node.value), key
            for i, (n, v) in enumerate(zip(node.value, value)):
                same(n, v, f"{key}[{i}]")
        elif dataclasses.is_dataclass(value):  # a section whose keys are all commented out
            assert node.value == "" and value == type(value)(), key
        else:
            written = yaml.constructor.SafeConstructor().construct_object(node)
            if isinstance(value, tuple):  # meter.id: one id for a list of one
                value = value[0] if len(value) == 1 else value
            assert written == value, (key, written, value)
            checked.append(key)

    for k, v in root.value:
        same(v, getattr(cfg, k.value), k.value)
    assert {"pv.model", "pv.peak_kw", "fleet.shards", "output.directory", "pricing.currency",
            "pricing.plans[0].unit_rate", "meter.id"} <= set(checked)
    assert len(checked) > 60


def dup_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        config.parse(text, "pvsim.yaml")
    return err.value


@pytest.mark.parametrize("text,key,lines", [
    ("output:\n  sync_rows: 5\npv: {}\noutput:\n  directory: /x\n", "output", (1, 4)),
    ("pv:\n  model: chart\n  peak_kw: 2\n  model: clearsky\n", "pv.model", (2, 4)),
    ("pricing:\n  plans:\n    - id: p\n      supplier: s\n      unit_rate: 1\n      unit_rate: 2\n",
     "pricing.plans[0].unit_rate", (5, 6)),
    ("pricing:\n  accounts:\n    1234: price-plan-0\n    '1234': price-plan-1\n",
     "pricing.accounts.1234", (3, 4)),
    ("timezone: UTC\n\n\ntimezone: UTC\n", "timezone", (1, 4)),
])
def test_a_key_given_twice_is_an_error_naming_both_lines(text, key, lines):
    err = dup_error(text)
    assert err.key == key
    assert f"set twice, at line {lines[0]} and at line {lines[1]}" in err.problem


def test_a_merge_may_be_overridden_and_is_no_duplicate():
    cfg = config.parse("pricing:\n  plans:\n    - &p {id: a, supplier: s, unit_rate: 1}\n"
                       "    - {<<: *p, id: b, unit_rate: 2}\n  accounts: {}\n")
    assert [(p.id, p.supplier, p.unit_rate) for p in cfg.pricing.plans] == \
        [("a", "s", 1.0), ("b", "s", 2.0)]


def alias_bomb(key: str, levels: int = 10, width: int = 9) -> str:
    """The billion laughs, on `key`: `levels` anchors, each a list of `width` aliases of the
    previous one, so the value stands for width**levels items (9**10 in about 450 bytes)."""
    items = ["&x0 lol"] + [f"&x{i} [" + ",".join([f"*x{i - 1}"] * width) + "]"
                           for i in range(1, levels + 1)]
    *sections, name = key.split(".")
    head = "".join(f"{'  ' * n}{s}:\n" for n, s in enumerate(sections))
    return f"{head}{'  ' * len(sections)}{name}: [{', '.join(items)}]\n"


@pytest.mark.parametrize("key", ["log_level", "meter.model", "broker.queue_type", "meter.id"])
def test_an_alias_bomb_is_one_short_line_naming_its_key(key):
    """A 450-byte file whose value stands for 9^10 items: the error message used to write them
    all out (33 s and 3 GB, then MemoryError); now the values are counted as the aliases expand
    them, from the node graph (linear in the file), and the line names the key."""
    text = alias_bomb(key)
    assert len(text) < 500
    err = dup_error(text)
    assert err.key == key and "more than 1,000,000 values" in err.problem
    assert len(str(err)) < 200


def test_an_alias_that_holds_itself_is_refused():
    err = dup_error("meter:\n  id: &a [m, *a]\n")
    assert err.key == "meter.id" and "holds itself" in err.problem


@pytest.mark.parametrize("text,key", [
    ("log_level: " + "[" * 5000 + "]" * 5000, "log_level"),
    ("meter: " + "{a: " * 5000 + "1" + "}" * 5000, "meter.a.a.a.a.a.a.a..."),
    ("".join(" " * i + f"k{i}:\n" for i in range(5000)), "k0.k1.k2.k3.k4.k5.k6.k7..."),
    ("pricing:\n  plans: " + "[" * 40 + "]" * 40, "pricing.plans"),
], ids=["flow-lists", "flow-mappings", "block", "41-levels"])
def test_deep_nesting_is_a_config_error_not_a_traceback(text, key):
    err = dup_error(text)
    assert err.key == key and f"nested deeper than {config.MAX_DEPTH} levels" in err.problem


@pytest.mark.parametrize("text,key", [
    ("meter:\n  seed: " + "9" * 5000, "meter.seed"),
    ("pv:\n  seed: -" + "1" * 4400, "pv.seed"),
    ("output:\n  sync_rows: " + "1:" * 3000 + "1", "output.sync_rows"),  # base 60, YAML 1.1
    ("meter:\n  listen: 127.0.0.1:" + "9" * 5000, "meter.listen"),
    ("pv:\n  listen: '[::1]:" + "0" * 5000 + "1'", "pv.listen"),
    ("broker:\n  url: amqp://h:" + "9" * 5000 + "/", "broker.url"),
    ("pricing:\n  accounts:\n    ? " + "7" * 5000 + "\n    : price-plan-0", "pricing.accounts"),
], ids=["meter.seed", "pv.seed", "base60", "meter.listen", "pv.listen", "broker.url", "key"])
def test_a_huge_integer_is_a_config_error_not_a_traceback(text, key):
    err = dup_error(text)
    assert err.key.startswith(key) and len(str(err)) < 300


@pytest.mark.parametrize("text", ["meter:\n  seed: !!int abc\n", "meter:\n  seed: !!bool maybe\n",
                                  "meter:\n  seed: !!float x\n", "meter:\n  seed: !!timestamp x\n"])
def test_a_value_its_tag_cannot_make_is_malformed_yaml_at_its_line(text):
    assert dup_error(text).problem.startswith("malformed YAML: line 2, column 9")


@pytest.mark.parametrize("key", ["timezone", "log_level", "meter.id", "meter.listen", "broker.url",
                                 "api.allowed_hosts", "pricing.currency", "meter.series_unit"])
def test_a_huge_string_is_cut_in_the_error_line(key):
    *sections, name = key.split(".")
    doc = {name: "=" + "x" * 300_000}
    for section in reversed(sections):
        doc = {section: doc}
    err = dup_error(yaml.safe_dump(doc, width=10**9))
    assert err.key.startswith(key) and len(str(err)) < 400 and "x" * 100 not in str(err)


def test_a_huge_key_is_cut_in_the_error_line():
    err = dup_error(yaml.safe_dump({"meter": {"x" * 100_000: 1}}, width=10**9))
    assert len(str(err)) < 400


def test_a_file_larger_than_the_cap_is_refused_without_reading_it(tmp_path):
    """200 MB (sparse): refused after reading 16 MiB, where it used to load for minutes."""
    path = tmp_path / "pvsim.yaml"
    with open(path, "wb") as f:
        f.truncate(200 * 10**6)
    with pytest.raises(ConfigError, match="larger than 16 MiB"):
        config.load(path)


@pytest.mark.slow
def test_a_hundred_thousand_meters_with_accounts_load(tmp_path):
    """100,000 ids, each with an account: 5 MB, within the caps (bench/bench_config.py times it;
    _check_unique was quadratic: 143 s)."""
    ids = [f"meter-{i:06d}" for i in range(100_000)]
    path = write(tmp_path, "meter:\n  id:\n" + "".join(f"    - {m}\n" for m in ids)
                 + "pricing:\n  accounts:\n" + "".join(f"    {m}: price-plan-1\n" for m in ids))
    cfg = config.load(path)
    assert cfg.meter.id == tuple(ids) and len(cfg.pricing.accounts) == 100_000
    with pytest.raises(ConfigError, match="'meter-000007' appears twice"):
        config.parse("meter:\n  id: [" + ", ".join(ids + ["meter-000007"]) + "]\n")


@pytest.mark.parametrize("meter_id,ok", [
    ("-cmd", False), ("+1", False), ("=1", False), ("@x", False), (".hidden", False),
    ("_x", False), (":x", False), ("0-", True), ("a", True), ("A.b_c:d-e", True),
    ("x" * 64, True), ("9" + "x" * 64, False)])
def test_a_meter_id_starts_with_a_letter_or_a_digit(meter_id, ok):
    text = yaml.safe_dump({"meter": {"id": [meter_id]}})
    if ok:
        assert config.parse(text).meter.id == (meter_id,)
    else:
        assert "the first a letter or a digit" in dup_error(text).problem


@pytest.mark.parametrize("currency,ok", [
    ("EUR", True), ("GBP", True), ("USD", True), ("€", True), ("£", True), ("$", True),
    ("eur", False), ("EURO", False), ("E", False), ("€€", False), ("1EU", False), (7, False)])
def test_pricing_currency_is_a_code_or_a_sign(currency, ok):
    text = yaml.safe_dump({"pricing": {"currency": currency}}, allow_unicode=True)
    if ok:
        assert config.parse(text).pricing.currency == currency
    else:
        assert dup_error(text).key == "pricing.currency"
    assert config.Config().pricing.currency == "EUR"


@pytest.mark.parametrize("module", ["pvsim.daemons.meter", "pvsim.daemons.pv"])
@pytest.mark.parametrize("text,key,problem", [
    (alias_bomb("log_level"), "log_level", "more than 1,000,000 values"),
    ("pv:\n  model: chart\n  model: clearsky\n", "pv.model", "set twice, at line 2 and at line 3"),
    ("meter:\n  seed: " + "9" * 5000 + "\n", "meter.seed", "an integer of 5,000 characters"),
    ("broker: " + "[" * 5000 + "]" * 5000 + "\n", "broker", "nested deeper"),
], ids=["alias-bomb", "duplicate", "huge-integer", "deep"])
def test_a_daemon_given_a_hostile_config_says_one_line_and_exits_78(tmp_path, module, text, key, problem):
    path = write(tmp_path, text)
    proc = subprocess.run([sys.executable, "-m", module, "--config", str(path)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=60)
    assert proc.returncode == 78, proc.stderr
    prog = "pvsim-" + module.rsplit(".", 1)[1]
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{prog}: {path}: {key}: ") and problem in proc.stderr


@pytest.mark.parametrize("module", ["pvsim.daemons.meter", "pvsim.daemons.pv"])
@pytest.mark.parametrize("args,message", [
    (["--nope"], "unrecognized arguments: --nope"),
    (["--config"], "argument --config: expected one argument"),
    (["--config", "a", "x" * 5000], "unrecognized arguments: xxx"),
])
def test_a_daemon_given_a_wrong_flag_says_one_line_and_exits_2(module, args, message):
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    prog = "pvsim-" + module.rsplit(".", 1)[1]
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"{prog}: {message}") and len(proc.stderr) <= 301
