"""The ``meta`` of a ``.memviz`` file, checked field by field before a Run holds it.

A file is input from anywhere: every field a view later reads is checked for its
type here, and every string made printable, so a malformed file is refused when
it is opened (one line) instead of breaking a view on every refresh.
"""

from __future__ import annotations

import math
from typing import Any

from ..core.run import ERROR_DETAILS, ERROR_FIELDS
from ..core.text import printable_tree


class MetaError(ValueError):
    pass


def _map(meta: dict, key: str) -> dict:
    value = meta.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MetaError(f"its {key} is a {type(value).__name__}, not a map")
    return printable_tree(value)


def _int_or_none(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MetaError(f"{what} is not a whole number")
    return value


def _model(meta: dict) -> dict:
    model = _map(meta, "model")
    for key in ("parameters", "trainable_parameters", "parameter_bytes"):
        _int_or_none(model.get(key), f"model.{key}")
    tree = model.get("module_tree", [])
    if not isinstance(tree, list):
        raise MetaError("its module tree is not a list")
    for row in tree:
        if not (isinstance(row, list) and len(row) == 5 and isinstance(row[0], str)
                and isinstance(row[1], str)
                and all(isinstance(v, int) and not isinstance(v, bool) for v in row[2:])):
            raise MetaError("a module tree row is not [name, class, parameters, trainable "
                            "bytes, frozen bytes]")
    return model


def _environment(meta: dict) -> dict:
    environment = _map(meta, "environment")
    nvml = environment.get("nvml")
    if nvml is not None and not isinstance(nvml, dict):
        raise MetaError("its environment.nvml is not a map")
    return environment


def _error(meta: dict) -> dict | None:
    error = meta.get("error")
    if error is None:
        return None
    error = _map(meta, "error")
    if not all(isinstance(error.get(k), str) for k in ERROR_FIELDS):
        raise MetaError("its error lacks a kind, message or traceback text")
    for key in ERROR_DETAILS:
        value = error.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value)):
            raise MetaError(f"its error.{key} is not a number")
    return {k: error[k] for k in (*ERROR_FIELDS, *ERROR_DETAILS) if k in error}


def _number(meta: dict, key: str) -> float:
    value = meta.get(key) or 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MetaError(f"its {key} is not a finite number")
    return float(value)


def _text(meta: dict, key: str, default: str) -> str:
    value = meta.get(key, default)
    if not isinstance(value, str):
        raise MetaError(f"its {key} is not text")
    return printable_tree(value)


def checked(meta: dict) -> dict[str, Any]:
    """The run's fields from ``meta``, each of the type its readers expect."""
    spec = meta.get("spec")
    if not isinstance(spec, dict):
        raise MetaError("it holds no run spec")
    return {
        "spec": printable_tree(spec),
        "environment": _environment(meta),
        "model": _model(meta),
        "summary": _map(meta, "summary"),
        "error": _error(meta),
        "t0_wall": _number(meta, "t0_wall"),
        "state": _text(meta, "state", "finished"),
        "end_reason": _text(meta, "end_reason", ""),
    }
