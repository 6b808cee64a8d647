"""The identity configuration file: ``EAI_IDENTITY_CONFIG`` and ``dedup batch --config``.

One loader for both, so a file that works for the hub works for the command. Every problem is
reported at once, each with the file, the key path, the offending value and the rule::

    identity configuration identity.yaml: matching.m.customer.spec = {'exact': 0.98}:
    unknown comparison 'spec' of customer; valid: id, weak_id, org_name, ...

because the hub stops at start on a bad file and the operator has nothing else to go on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.identity.config import ConfigIssue, ConfigIssues, IdentityConfig, Loc
from flows.identity.survivorship import SurvivorshipConfig

SECTIONS = ("matching", "survivorship")
M = TypeVar("M", bound=BaseModel)


class IdentityFile(BaseModel):
    """What ``EAI_IDENTITY_CONFIG`` names: matching configuration and survivorship rules."""

    model_config = ConfigDict(extra="forbid")

    matching: IdentityConfig = Field(default_factory=IdentityConfig)
    survivorship: SurvivorshipConfig = Field(default_factory=SurvivorshipConfig)


class IdentityConfigError(ValueError):
    """The file is invalid; ``issues`` lists every problem, the message names the file."""

    def __init__(self, source: Path | str, issues: Sequence[ConfigIssue | str]) -> None:
        self.source = str(source)
        self.issues = tuple(issues)
        head = f"identity configuration {self.source}:"
        if len(self.issues) == 1:
            text = f"{head} {self.issues[0]}"
        else:
            text = "\n".join([f"{head} {len(self.issues)} problems", *(f"  {i}" for i in issues)])
        super().__init__(text)


def _keys_at(model: type[BaseModel], loc: Loc) -> list[str] | None:
    """The keys the mapping at `loc` accepts, following the models' field types."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]  # `part` is a free key (a field name)
        else:
            return None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def issues_of(exc: ValidationError, model: type[BaseModel]) -> list[ConfigIssue]:
    """pydantic's errors as key path, value and rule; ours keep their own paths and words."""
    out: list[ConfigIssue] = []
    for err in exc.errors():
        loc: Loc = tuple(err["loc"])
        raised = (err.get("ctx") or {}).get("error")
        if isinstance(raised, ConfigIssues):
            out.extend(ConfigIssue((*loc, *i.loc), i.value, i.rule) for i in raised.issues)
            continue
        rule = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            valid = _keys_at(model, loc[:-1])
            rule = f"unknown key {loc[-1]!r}"
            if valid is not None:
                rule += f"; valid keys: {', '.join(valid)}"
            if model is IdentityFile and len(loc) == 1 and loc[0] in IdentityConfig.model_fields:
                rule += " (a matching setting: put it under 'matching:')"
        out.append(ConfigIssue(loc, err.get("input"), rule))
    return out


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        # json's JSONDecodeError is a ValueError; the parser's message has line and column
        raise IdentityConfigError(path, [str(exc)]) from exc
    if data is not None and not isinstance(data, Mapping):
        raise IdentityConfigError(path, [ConfigIssue((), data, "must be a mapping of keys")])
    return data or {}


def _validate(path: Path, model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise IdentityConfigError(path, issues_of(exc, model)) from None


def load_identity_file(path: Path) -> IdentityFile:
    """Parse and validate the hub's file (sections ``matching`` and ``survivorship``)."""
    return _validate(path, IdentityFile, _read(path))


def load_matching(path: Path) -> IdentityConfig:
    """The matching settings of `path`: the hub's file, or the matching keys alone.

    A file with a ``matching`` or ``survivorship`` section is the hub's file and is validated
    whole (survivorship included, so the same file is right or wrong for both); otherwise the
    top level is the matching settings, the form ``dedup batch --config`` always took. No
    matching setting is called ``matching`` or ``survivorship``, so the two cannot be confused.
    """
    data = _read(path)
    if any(key in data for key in SECTIONS):
        return _validate(path, IdentityFile, data).matching
    return _validate(path, IdentityConfig, data)
