"""Functions named by strings that cross processes: queries and ``ModCall``.

Rules:

* A name is ``"module:function"`` (dotted attributes after the colon are
  followed); a callable is returned as it is.
* Resolution imports the module: only names from the cluster's own code may
  reach here (the trust boundary restricts which; see docs/operations.rst).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def resolve_function(name: Any) -> Callable:
    """``"pkg.mod:fun"`` -> the function."""
    if callable(name):
        return name
    mod_name, sep, attr = str(name).partition(":")
    if not sep or not attr:
        raise ValueError(f"function names are 'module:function', got {name!r}")
    obj: Any = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{name} is not callable")
    return obj
