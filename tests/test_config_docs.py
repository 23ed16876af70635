"""One schema, three documents: the reference, the shipped file and the manual page say what
pvsim/config/schema.py says, no more and no less.

- docs/reference/config.md is generated from the schema: the committed file must be what the
  generator makes (the failure says the command that regenerates it).
- config/pvsim.yaml (the shipped, commented file) and man/pvsim.yaml.5 must each name every key
  the schema knows, and name no key it does not know (no docs for keys that do not exist); the
  values the shipped file sets and the defaults the manual states must be the schema's defaults.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from pvsim import config
from pvsim.config import reference
from pvsim.config.keyspec import Key, walk

ROOT = Path(__file__).resolve().parents[1]
KEYS = {k.name: k for k in walk(config.Config)}
SECTIONS = sorted({k.section for k in KEYS.values() if k.section})
# A dotted key in prose: `pv.listen`, never the tail of `pvsim-meter.state` or `pvsim.readings`.
MENTION = re.compile(r"(?<![\w./-])(?:%s)\.[a-z_]+(?:\[\]\.[a-z_]+)?" % "|".join(SECTIONS))
# Set on purpose to another value than the default, as an example to follow.
SHIPPED_EXAMPLES = {"timezone"}


def test_the_reference_is_what_the_schema_generates():
    committed = (ROOT / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    assert committed == reference.markdown(), (
        "docs/reference/config.md differs from the schema (pvsim/config/schema.py); regenerate "
        f"it with: {reference.COMMAND}")


def test_the_reference_lists_every_key_with_its_type_default_unit_and_meaning():
    text = reference.markdown()
    for key in KEYS.values():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{key.name}` |")), None)
        assert row, f"{key.name} has no row in the reference"
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 5 and all(cells[i] for i in (1, 2, 4)), row
        assert key.spec.doc.endswith((".", "...")), f"{key.name}: its spec has no meaning (doc)"
    assert "| `pv.peak_kw` | number, greater than 0, at most 1,000,000 | `3.25` | kW |" in text
    assert "| `meter.id` | a meter id: " in text and "| `pricing.plans[].unit_rate` |" in text


# --- config/pvsim.yaml ------------------------------------------------------------------------

SHIPPED = ROOT / "config" / "pvsim.yaml"
# A commented-out key: `  # urls: [amqp://...]`, `  # latitude: 40.42` (one value, a list or a
# mapping), never prose such as `# series: a CSV of the building's consumption`.
COMMENTED_KEY = re.compile(r"^(?P<indent> *)# ?(?P<name>[a-z_]+): (?:\[.*|\{.*|\S+)$")


def pairs(node: yaml.Node) -> list[tuple[str, yaml.Node]]:
    """A mapping node's keys and values ([] for any other node)."""
    return [(k.value, v) for k, v in node.value] if isinstance(node, yaml.MappingNode) else []


def shipped_keys() -> tuple[set[str], set[str], set[str]]:
    """(keys the shipped file sets, keys it shows commented out, dotted keys its comments name)."""
    text = SHIPPED.read_text(encoding="utf-8")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    set_keys: set[str] = set()
    for section, body in pairs(root):
        set_keys.add(section)
        for name, value in pairs(body):
            set_keys.add(f"{section}.{name}")
            for item in value.value if isinstance(value, yaml.SequenceNode) else []:
                set_keys |= {f"{section}.{name}[].{k}" for k, _ in pairs(item)}
    commented, mentioned, section = set(), set(), ""
    for line in text.splitlines():
        if re.match(r"[a-z_]+:", line):
            section = line.split(":")[0]
        found = COMMENTED_KEY.match(line)
        if found:
            indent = len(found["indent"])
            commented.add(f"{section}.{found['name']}" if indent else found["name"])
        if "#" in line:
            mentioned |= set(MENTION.findall(line.split("#", 1)[1]))
    return set_keys, commented, mentioned


def test_the_shipped_file_names_every_key_and_no_other():
    set_keys, commented, mentioned = shipped_keys()
    named = {k for k in set_keys | commented if k in KEYS or k in SECTIONS}
    assert set(KEYS) - named == set(), "keys the shipped config/pvsim.yaml does not show"
    assert (set_keys | commented | mentioned) - set(KEYS) - set(SECTIONS) == set(), \
        "keys config/pvsim.yaml names that the schema does not know"
    assert {"broker.urls", "pv.latitude", "api.token_file"} <= commented
    assert {"fleet.shards", "limits.max_power_w"} <= mentioned


def test_the_shipped_file_sets_the_defaults():
    """Its header says a missing key takes the default shown: every value it sets is the
    default, but for the examples it sets on purpose (SHIPPED_EXAMPLES)."""
    cfg = config.load(SHIPPED)
    set_keys, _, _ = shipped_keys()
    checked = []
    for name in sorted(set_keys & set(KEYS) - SHIPPED_EXAMPLES):
        if "[]" in name:
            continue
        value = cfg
        for part in name.split("."):
            value = getattr(value, part)
        assert value == KEYS[name].default, f"config/pvsim.yaml sets {name}: {value!r}, not the default"
        checked.append(name)
    assert len(checked) > 50


# --- man/pvsim.yaml.5 ---------------------------------------------------------------------------

MAN = ROOT / "man" / "pvsim.yaml.5"
ROFF = {r"\-": "-", r"\fB": "", r"\fI": "", r"\fR": "", r"\fP": "", r"\(en": "-", r"\(em": "-"}


def unroff(text: str) -> str:
    return re.sub("|".join(re.escape(e) for e in ROFF), lambda m: ROFF[m.group(0)], text)


def man_items() -> list[tuple[str, str, str | None]]:
    """(section, key, stated default or None) of each key a `.TP` item of the manual heads."""
    items: list[tuple[str, str, str | None]] = []
    lines = MAN.read_text(encoding="utf-8").splitlines()
    section, head = "", False  # head: in the lines heading a .TP item (one or more .B/.BR)
    for line in lines:
        if line.startswith(".SS "):
            section = line[4:].strip()
        head = (line == ".TP" or head) and (line == ".TP" or bool(re.match(r"\.BR? ", line)))
        if not head or line == ".TP":
            continue
        tokens = shlex.split(unroff(line.split(" ", 1)[1]))
        for i, token in enumerate(tokens):
            name = token.strip(" ,()")
            if token.strip().startswith("(default"):
                continue
            if re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", name) and (i == 0 or tokens[i - 1].strip() != "(default"):
                states = i + 2 < len(tokens) and tokens[i + 1].strip() == "(default"
                items.append((section, name, tokens[i + 2] if states else None))
    return items


def test_the_manual_names_every_key_and_no_other():
    raw = MAN.read_text(encoding="utf-8")
    text = unroff(raw)
    items = man_items()
    headed = {name for _, name, _ in items}
    mentioned = set(MENTION.findall(text))
    assert (headed | mentioned) - set(KEYS) == set(), \
        "keys man/pvsim.yaml.5 names that the schema does not know"
    missing = [k for k in KEYS if ("[]" in k and f"\\fB{KEYS[k].leaf}\\fR" not in raw)
               or ("[]" not in k and k not in headed)]
    assert missing == [], "keys man/pvsim.yaml.5 has no item for"
    misplaced = [(section, name) for section, name, _ in items if KEYS[name].section != section]
    assert misplaced == [], "items under another section's heading (.SS)"


def stated_equals(key: Key, stated: str) -> bool:
    value = yaml.safe_load(stated)
    default = key.default
    if isinstance(default, tuple):
        return value == list(default) or (key.spec.one_or_list and len(default) == 1 and value == default[0])
    return value == default


@pytest.mark.parametrize("section,name,stated", [i for i in man_items() if i[2] is not None],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_the_manual_states_the_schemas_defaults(section, name, stated):
    assert stated_equals(KEYS[name], stated), f"man/pvsim.yaml.5: {name} (default {stated}), " \
        f"the schema's default is {KEYS[name].default!r}"
