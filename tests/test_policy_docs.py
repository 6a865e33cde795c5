"""docs/policy-language.md documents every key, value, rule and category of the language, and
every YAML example in it is loaded and run (a new example without a test fails the suite)."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from ruamel.yaml import YAML

from trustledger.engine import Event, evaluate
from trustledger.policy import (
    CompiledPolicy,
    Register,
    load_policy,
    load_register,
    models,
    parse_policy,
    parse_register,
    register,
)
from trustledger.policy.compiler import probe_attributes
from trustledger.policy.models import AttributeType
from trustledger.policy.register import find_register
from trustledger.policy.taxonomy import ALLOWED_CATEGORIES, OUT_OF_BOUNDS_CATEGORIES, Gravity

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "policy-language.md").read_text(encoding="utf-8")
SOURCES = sorted((ROOT / "src" / "trustledger" / "policy").glob("*.py"))

MODELS = [obj for module in (models, register) for obj in vars(module).values()
          if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ ==
          module.__name__ and not obj.__name__.startswith("_")]
ENUMS = [obj for obj in vars(models).values()
         if isinstance(obj, type) and issubclass(obj, Enum) and obj.__module__ == models.__name__]
ALL_ENUMS: list[type[Enum]] = [*ENUMS, Gravity]


def keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


@pytest.mark.parametrize("key", keys(models.Policy))
def test_every_top_level_key_has_a_section(key: str) -> None:
    assert f"### `{key}`" in DOC


@pytest.mark.parametrize("key", keys(register.RegisterDocument))
def test_every_register_key_is_in_the_register_table(key: str) -> None:
    section = DOC.split("## The event-type register", 1)[1].split("\n## ", 1)[0]
    assert f"| `{key}` |" in section


@pytest.mark.parametrize(("model", "key"), [(m.__name__, k) for m in MODELS for k in keys(m)])
def test_every_key_is_documented(model: str, key: str) -> None:
    assert f"`{key}`" in DOC or f"{key}:" in DOC, f"{model}.{key} is not documented"


@pytest.mark.parametrize("value", sorted({str(v.value) for e in ALL_ENUMS for v in e}))
def test_every_enumerated_value_is_documented(value: str) -> None:
    assert f"`{value}`" in DOC or f"{value} " in DOC or f"{value}:" in DOC


@pytest.mark.parametrize("category", sorted([*ALLOWED_CATEGORIES, *OUT_OF_BOUNDS_CATEGORIES]))
def test_every_category_is_documented(category: str) -> None:
    assert f"`{category}`" in DOC


RULE = re.compile(
    r'[pP]roblem\((?:[^()"]|"[^"]*"|\((?:[^()]|\([^()]*\))*\))*?,\s*"([a-z]+(?:-[a-z]+)*)"')
"""The rule argument of every ``problem(...)`` / ``PolicyProblem(...)`` call."""


def rules_in_source() -> set[str]:
    found: set[str] = set()
    for path in SOURCES:
        found |= set(RULE.findall(path.read_text(encoding="utf-8")))
    return found


@pytest.mark.parametrize("rule", sorted(rules_in_source()))
def test_every_rule_is_documented(rule: str) -> None:
    assert f"`{rule}`" in DOC


def test_rules_were_found() -> None:
    assert {"context-firewall", "proportionality", "out-of-bounds-category", "schema",
            "duplicate-key", "yaml-syntax", "cycle", "unregistered-type"} <= rules_in_source()


@pytest.mark.parametrize("rule", ["register-declares", "policy-scores"])
def test_the_misplaced_key_rules_are_documented(rule: str) -> None:
    # passed as keyword arguments, which the pattern above does not see
    assert f'rule="{rule}"' in "".join(p.read_text(encoding="utf-8") for p in SOURCES)
    assert f"`{rule}`" in DOC


# --- every YAML example of the page is run ---------------------------------------------------

EXAMPLE = re.compile(r"(?:<!-- example: (?P<how>[^>]*?) -->\n)?```yaml\n(?P<body>.*?)```",
                     re.S)
EXAMPLES = [(m.group("how"), m.group("body"), DOC[:m.start()].count("\n") + 1)
            for m in EXAMPLE.finditer(DOC)]
"""Every fenced YAML block of the page: how it is tested, its text, and its line."""


def _yaml(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


def _subset(part: Any, whole: Any, path: str) -> None:
    if isinstance(part, dict):
        assert isinstance(whole, dict), f"{path} is not a mapping in the file"
        for key, value in part.items():
            assert key in whole, f"{path}.{key} is not in the file"
            _subset(value, whole[key], f"{path}.{key}")
    else:
        assert part == whole, f"{path}: the page says {part!r}, the file {whole!r}"


def _one_event_of_each_type(policy: CompiledPolicy) -> list[Event]:
    moment = policy.effective_from + timedelta(days=1)
    events = []
    for name, etype in policy.event_types.items():
        attrs = probe_attributes(etype)[0]
        for spec in etype.attributes:
            if spec.type is AttributeType.DATE and spec.name in attrs:
                attrs[spec.name] = moment.isoformat()
        events.append(Event("docs", name, "subject", name, moment, moment, attrs))
    return events


def test_the_page_has_examples_and_each_says_how_it_is_tested() -> None:
    assert len(EXAMPLES) >= 5
    untested = [line for how, _, line in EXAMPLES if how is None]
    assert not untested, f"YAML examples without an `<!-- example: ... -->` comment at " \
                         f"docs/policy-language.md lines {untested}"


def _register_above(line: int) -> Register:
    """The last whole register example of the page before ``line``."""
    above = [(b, at) for how, b, at in EXAMPLES if how and how.startswith("register")
             and at < line]
    assert above, f"line {line}: a policy example needs a register example above it"
    body, at = above[-1]
    return parse_register(body, f"docs/policy-language.md:{at}")


@pytest.mark.parametrize(("how", "body", "line"),
                         [e for e in EXAMPLES if e[0] and e[0].startswith("register")],
                         ids=lambda value: str(value) if isinstance(value, int) else None)
def test_every_register_example_loads(how: str, body: str, line: int) -> None:
    declared = parse_register(body, f"docs/policy-language.md:{line}")
    file = how.removeprefix("register").strip()
    if file:
        assert declared.hash == load_register(ROOT / file).hash, f"{file} differs from the page"


@pytest.mark.parametrize(("how", "body", "line"),
                         [e for e in EXAMPLES if e[0] and e[0].startswith("policy")],
                         ids=lambda value: str(value) if isinstance(value, int) else None)
def test_every_policy_example_loads_and_evaluates(how: str, body: str, line: int) -> None:
    file = how.removeprefix("policy").strip()
    declared = load_register(find_register(ROOT / file)) if file else _register_above(line)
    policy = parse_policy(body, f"docs/policy-language.md:{line}", register=declared)
    if file:
        assert policy.hash == load_policy(ROOT / file).hash, f"{file} differs from the page"
    start = policy.effective_from + timedelta(days=1)
    empty = evaluate(policy, [], start, opt_ins=set(policy.scorecards))
    assert set(empty.scorecards) == set(policy.scorecards)
    events = _one_event_of_each_type(policy)
    result = evaluate(policy, events, start + timedelta(days=1), opt_ins=set(policy.scorecards))
    assert all(o.counted or o.why_not for o in result.events)
    assert any(o.counted for o in result.events), "no example event counts"


PART = re.compile(r"part of (?P<file>\S+) at (?P<key>[a-z_]+)")


@pytest.mark.parametrize(("how", "body", "line"),
                         [e for e in EXAMPLES if e[0] and e[0].startswith("part of")],
                         ids=lambda value: str(value) if isinstance(value, int) else None)
def test_every_partial_example_is_what_its_tested_file_says(how: str, body: str,
                                                            line: int) -> None:
    match = PART.fullmatch(how)
    assert match is not None, f"line {line}: write `part of FILE at KEY`"
    file, key = ROOT / match.group("file"), match.group("key")
    whole = _yaml(file.read_text(encoding="utf-8"))
    part = _yaml(body)
    if key in part and len(part) == 1:
        part = part[key]
    _subset(part, whole[key], key)
    if "register" in whole:
        assert load_register(file).event_types   # a register: read and linted
    elif not any(card.get("kind") == "statistical" for card in whole.get("scorecards", {})
                 .values()):
        # A statistical policy needs its trained model: tests/test_policy_statistical.py
        # loads that file with it.
        policy = load_policy(file)
        evaluate(policy, _one_event_of_each_type(policy),
                 policy.effective_from + timedelta(days=2), opt_ins=set(policy.scorecards))
