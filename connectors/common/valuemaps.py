"""Code lists: native codes <-> canonical values, configurable by the operator.

Each system ships a default ``valuemaps.yaml`` next to its mapping. An operator may give an
override file; its maps are merged into the defaults entry by entry (a ``null`` removes a
code), so a site only writes down what differs from the product defaults.

File format::

    stage:                # map name, used in error messages as "<system>.stage"
      "01": prospect      # native code -> canonical value
      "02": interested
      _reverse:           # optional: which native code to emit when several share a value
        prospect: "01"

Codes must be quoted strings: unquoted ``01`` is the integer 1 to YAML, which silently loses
the leading zero a system's code list depends on, so the loader refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connectors.common.errors import reject

REVERSE = "_reverse"


class ValueMapConfigError(ValueError):
    """A value-map file that cannot be used; raised at start-up, never per message."""


@dataclass(frozen=True)
class ValueMap:
    name: str
    codes: Mapping[str, str]
    reverse: Mapping[str, str] = field(default_factory=dict)

    def to_canonical(self, code: Any, field_name: str) -> str:
        key = str(code).strip() if code is not None else None
        if key is None or key not in self.codes:
            known = ", ".join(sorted(self.codes)) or "none"
            raise reject(
                field_name,
                code if code is not None else "<missing>",
                f"unknown code in value map {self.name} (known: {known})",
            )
        return self.codes[key]

    def to_native(self, value: Any, field_name: str) -> str:
        text = str(value.value if hasattr(value, "value") else value)
        if text in self.reverse:
            return self.reverse[text]
        for code, canonical in self.codes.items():
            if canonical == text:
                return code
        known = ", ".join(sorted(set(self.codes.values()))) or "none"
        raise reject(
            field_name, text, f"has no native code in value map {self.name} (known: {known})"
        )

    @property
    def canonical_values(self) -> frozenset[str]:
        return frozenset(self.codes.values())


@dataclass(frozen=True)
class ValueMaps:
    system: str
    maps: Mapping[str, ValueMap]
    sources: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> ValueMap:
        try:
            return self.maps[name]
        except KeyError:
            raise ValueMapConfigError(
                f"value map {self.system}.{name} is not defined in {', '.join(self.sources)}"
            ) from None

    def to_canonical(self, name: str, code: Any, field_name: str) -> str:
        return self[name].to_canonical(code, field_name)

    def to_native(self, name: str, value: Any, field_name: str) -> str:
        return self[name].to_native(value, field_name)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueMapConfigError(f"cannot read value maps from {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueMapConfigError(f"{path}: top level must be a mapping of map names")
    return data


def _entries(path: Path, name: str, raw: Any) -> dict[str, str | None]:
    if not isinstance(raw, dict):
        raise ValueMapConfigError(f"{path}: map {name!r} must be a mapping of code: value")
    out: dict[str, str | None] = {}
    for code, value in raw.items():
        if code == REVERSE:
            continue
        if not isinstance(code, str):
            raise ValueMapConfigError(
                f"{path}: map {name!r} code {code!r} must be a quoted string "
                f"(write '{code}': ... so YAML keeps leading zeros)"
            )
        if value is not None and not isinstance(value, str):
            raise ValueMapConfigError(f"{path}: map {name!r} code {code!r} must map to a string")
        out[code] = value
    return out


def _reverse(path: Path, name: str, raw: Any) -> dict[str, str]:
    rev = raw.get(REVERSE, {}) if isinstance(raw, dict) else {}
    if not isinstance(rev, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in rev.items()
    ):
        raise ValueMapConfigError(f"{path}: {name}.{REVERSE} must map values to quoted codes")
    return dict(rev)


def load_value_maps(
    system: str, default_path: Path, override_path: str | Path | None = None
) -> ValueMaps:
    layers = [Path(default_path)]
    if override_path is not None:
        layers.append(Path(override_path))
    merged: dict[str, dict[str, str | None]] = {}
    reverses: dict[str, dict[str, str]] = {}
    for path in layers:
        for name, raw in _read(path).items():
            merged.setdefault(name, {}).update(_entries(path, name, raw))
            reverses.setdefault(name, {}).update(_reverse(path, name, raw))
    maps: dict[str, ValueMap] = {}
    for name, entries in merged.items():
        codes = {k: v for k, v in entries.items() if v is not None}
        reverse = reverses.get(name, {})
        for value, code in reverse.items():
            if codes.get(code) != value:
                raise ValueMapConfigError(
                    f"value map {system}.{name}: {REVERSE} sends {value!r} to code {code!r}, "
                    f"which does not map back to {value!r}"
                )
        maps[name] = ValueMap(f"{system}.{name}", codes, reverse)
    return ValueMaps(system, maps, tuple(str(p) for p in layers))
