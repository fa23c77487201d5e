"""Load and validate the pipeline configuration against its JSON schema.

The schema (`workflow/schemas/config.schema.yaml`) is the single source of defaults and
bounds; errors name the offending key as a dotted path so a user can find it in the YAML.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from n2v_repro.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(UserError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


def _key_path(path: Iterable[Any]) -> str:
    parts: list[str] = []
    for item in path:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "<top level>"


def _fill_defaults(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if isinstance(config.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(config[key], sub)


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _coerce_strings(value: Any, schema: Mapping[str, Any]) -> Any:
    """Turn command-line strings into the numbers the schema asks for.

    `snakemake --config sigmas=[25]` hands the list items over as strings ('25'); Snakemake
    converts only top-level scalars. Strings that parse as the schema's integer, number or
    boolean type become that type; anything else is left for validation to report.
    """
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {k: _coerce_strings(v, properties.get(k, {})) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce_strings(item, schema.get("items", {})) for item in value]
    if not isinstance(value, str):
        return value
    types = _types(schema)
    text = value.strip()
    if "integer" in types and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "null" in types and text.lower() in ("null", "none", "~"):
        return None
    return value


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


def validate_config(config: Mapping[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Return a copy of `config` with defaults filled in, or raise ConfigError naming the key."""
    schema = load_schema(schema_path)
    filled = _coerce_strings(copy.deepcopy(dict(config)), schema)
    _fill_defaults(filled, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"config key '{_key_path(e.absolute_path)}': {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    _check_consistency(filled)
    return filled


def _check_consistency(config: Mapping[str, Any]) -> None:
    """Rules that JSON schema cannot express across keys."""
    data = config["data"]
    n_bsd68 = data["bsd68_images"]
    if n_bsd68 is not None and data["n_valid"] >= n_bsd68:
        raise ConfigError(
            f"config key 'data.n_valid': {data['n_valid']} leaves no test image out of "
            f"data.bsd68_images = {n_bsd68}; it must be smaller"
        )


def load_config(*paths: str | Path) -> dict[str, Any]:
    """Merge YAML files left to right (later keys win, dicts merge) and validate the result."""
    merged: dict[str, Any] = {}
    for path in paths:
        with open(path) as handle:
            merge_into(merged, yaml.safe_load(handle) or {})
    return validate_config(merged)


def merge_into(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict update, the way Snakemake merges --configfile over configfile:."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_into(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base
