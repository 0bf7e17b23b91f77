"""Names that arrive from the network and name code: which may be resolved.

Queries, ``ModCall`` targets, machines and actor classes cross processes as
``"module:attribute"`` strings.  Importing whatever such a string names
would let anyone who can reach a node run any function of any installed
module (``builtins:exec``, ``os:system``) -- so nothing is imported or
looked up before the name passes these rules.

Rules:

* **Modules.**  A module may be named only if the node allows it:
  ``allowed_modules`` lists module names, each allowing itself and the
  modules inside it as a package (``"machines"`` allows ``"machines.kv"``).
  The shipped ``machines`` package is allowed unless a node says otherwise.
  The check reads the string only: it runs before any import.
* **Names.**  ``module:attribute`` with one public attribute: no leading
  underscore, no dots after the colon (no attribute chains), module parts
  that are Python identifiers.
* **Queries** name a function of the cluster's own machine module: one
  defined in that module (not imported into it), public, not one of the
  machine's callbacks (``init``, ``apply``, ...) -- or, if the module
  declares ``QUERIES`` (names), exactly those.
* **ModCall** targets are public functions defined in an allowed module.
* **Machines** and **actor classes** are allowed modules, or classes of
  allowed modules (``"pkg.mod:Class"``).
* A node's ``allowed_modules`` add to the default (:func:`node_modules`):
  naming your own machine module allows it and keeps ``machines``.
* A refusal is :class:`NameRefused` (a ``ValueError``) saying why; callers
  turn it into the error their caller expects (``InvalidQuery``,
  ``MachineError``, ``ActorClassError``).
"""
from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, Callable, Iterable

DEFAULT_ALLOWED_MODULES = ("machines",)

# The callbacks of ra_actors.core.machine.Machine: never queries.
MACHINE_CALLBACKS = frozenset({"init", "apply", "state_enter", "tick", "overview", "version", "which_module",
                               "snapshot_installed", "init_aux", "handle_aux",
                               # a disk machine's (ra_actors.core.machine.DISK_CALLBACKS)
                               "open", "applied_index", "applied_reply", "snapshot", "install", "close", "release",
                               "query_view"})

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ATTRIBUTE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class NameRefused(ValueError):
    """A name that may not be resolved (the message says why)."""


def parse(name: Any, *, attribute_required: bool = True) -> tuple[str, str | None]:
    """``"pkg.mod:attr"`` -> ``("pkg.mod", "attr")``; refuses anything else."""
    if not isinstance(name, str):
        raise NameRefused(f"a name is a 'module:function' string, not {type(name).__name__}")
    module, sep, attribute = name.partition(":")
    if not _MODULE.match(module):
        raise NameRefused(f"{name!r}: {module!r} is not a module name")
    if not sep:
        if attribute_required:
            raise NameRefused(f"{name!r}: names are 'module:function'")
        return module, None
    if not _ATTRIBUTE.match(attribute):
        raise NameRefused(f"{name!r}: {attribute!r} is not a public name of {module} "
                          "(one attribute, no leading underscore, no dots)")
    return module, attribute


def node_modules(extra: Iterable[str] | None) -> tuple[str, ...]:
    """What a node allows: :data:`DEFAULT_ALLOWED_MODULES` plus ``extra``
    (checked: a ``ValueError`` names a bad entry)."""
    if isinstance(extra, str):
        raise ValueError(f"allowed_modules is a list of module names, not the string {extra!r}")
    names = list(DEFAULT_ALLOWED_MODULES)
    for module in extra or ():
        if module not in names:
            names.append(module)
    return ModulePolicy(names).allowed


class ModulePolicy:
    """The modules a node allows (see the module rules)."""

    def __init__(self, allowed: Iterable[str] | None = None) -> None:
        names = tuple(DEFAULT_ALLOWED_MODULES if allowed is None else allowed)
        for module in names:
            if not isinstance(module, str) or not _MODULE.match(module):
                raise ValueError(f"allowed_modules holds {module!r}, which is not a module name")
        self.allowed = names

    def allows(self, module: str) -> bool:
        return any(module == a or module.startswith(a + ".") for a in self.allowed)

    def check(self, module: str, what: str) -> None:
        if not self.allows(module):
            raise NameRefused(f"{what} {module!r} is not in this node's allowed modules "
                              f"({', '.join(self.allowed) or 'none'}): allow it with allowed_modules "
                              "(ra-actors node start --allow-module)")

    def machine(self, path: str) -> tuple[str, str | None]:
        """Check a machine's path (``"pkg.mod"`` or ``"pkg.mod:Class"``)."""
        module, attribute = parse(path, attribute_required=False)
        self.check(module, "machine module")
        return module, attribute

    def actor_class(self, path: str) -> tuple[str, str]:
        module, attribute = parse(path)
        self.check(module, "actor module")
        return module, attribute

    def call(self, name: Any) -> Callable:
        """The function a ``ModCall`` names (a callable is its own answer:
        only a machine in this process can hand one over)."""
        if callable(name):
            return name
        module, attribute = parse(name)
        self.check(module, "ModCall module")
        return _defined_function(module, attribute, name)


def query_function(machine_path: str, name: Any) -> Callable:
    """The function a query names, for a cluster running ``machine_path``."""
    if callable(name):
        return name
    module, attribute = parse(name)
    machine_module = machine_path.partition(":")[0]
    if module != machine_module:
        raise NameRefused(f"{name!r}: queries name functions of the cluster's machine module "
                          f"{machine_module!r}")
    mod = importlib.import_module(module)     # (already loaded: it is the running machine)
    declared = getattr(mod, "QUERIES", None)
    if declared is not None:
        if attribute not in {q if isinstance(q, str) else getattr(q, "__name__", None) for q in declared}:
            raise NameRefused(f"{name!r}: {module} declares its queries (QUERIES) and this is not one")
    elif attribute in MACHINE_CALLBACKS:
        raise NameRefused(f"{name!r}: {attribute} is a machine callback, not a query")
    return _defined_function(module, attribute, name)


def _defined_function(module: str, attribute: str, name: str) -> Callable:
    mod = importlib.import_module(module)
    fn = getattr(mod, attribute, None)
    if not inspect.isfunction(fn) or fn.__module__ != mod.__name__:
        raise NameRefused(f"{name!r}: {module} defines no public function {attribute!r}")
    return fn
