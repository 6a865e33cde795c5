"""docs/policy-language.md documents every key, value, rule and category of the language."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

import pytest
from pydantic import BaseModel

from trustledger.policy import models
from trustledger.policy.taxonomy import ALLOWED_CATEGORIES, OUT_OF_BOUNDS_CATEGORIES, Gravity

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "policy-language.md").read_text(encoding="utf-8")
SOURCES = sorted((ROOT / "src" / "trustledger" / "policy").glob("*.py"))

MODELS = [obj for obj in vars(models).values()
          if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ ==
          models.__name__ and not obj.__name__.startswith("_")]
ENUMS = [obj for obj in vars(models).values()
         if isinstance(obj, type) and issubclass(obj, Enum) and obj.__module__ == models.__name__]
ALL_ENUMS: list[type[Enum]] = [*ENUMS, Gravity]


def keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


@pytest.mark.parametrize("key", keys(models.Policy))
def test_every_top_level_key_has_a_section(key: str) -> None:
    assert f"### `{key}`" in DOC


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
            "duplicate-key", "yaml-syntax", "cycle"} <= rules_in_source()
