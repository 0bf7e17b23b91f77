"""The machine behaviour (Ra's ``ra_machine``) and its adapter.

A machine is any object (usually a module) with::

    init(config: dict) -> state
    apply(meta, command, state) -> (state, reply) | (state, reply, effects)

and optionally ``state_enter(role, state) -> effects``, ``tick(time_ms,
state) -> effects``, ``overview(state) -> dict``, ``version() -> int``,
``which_module(version) -> machine``, ``snapshot_installed(meta, state) ->
effects``.  ``apply`` must be deterministic: same meta, command and state,
same result, on every member.  ``effects`` may be a single effect or a list.

Rule: the core never imports machines; the shell loads the module (by import
path) and hands it to :class:`Machine`.
"""
from __future__ import annotations

from typing import Any

NO_REPLY = "$ra_no_reply"


def _as_list(effects: Any) -> list:
    if effects is None:
        return []
    if isinstance(effects, (list, tuple)) and not hasattr(effects, "__dataclass_fields__"):
        return list(effects)
    return [effects]


class Machine:
    """Uniform access to a user machine's required and optional callbacks."""

    def __init__(self, impl: Any):
        if not callable(getattr(impl, "init", None)) or not callable(getattr(impl, "apply", None)):
            raise TypeError(f"{impl!r} is not a machine: it needs init(config) and apply(meta, cmd, state)")
        self.impl = impl

    # -- versioning -------------------------------------------------------
    def version(self) -> int:
        fn = getattr(self.impl, "version", None)
        return int(fn()) if callable(fn) else 0

    def module_for(self, version: int) -> Any:
        fn = getattr(self.impl, "which_module", None)
        return fn(version) if callable(fn) else self.impl

    # -- callbacks ----------------------------------------------------------
    def init(self, config: dict) -> Any:
        return self.impl.init(config)

    def apply(self, version: int, meta: Any, command: Any, state: Any) -> tuple[Any, Any, list]:
        result = self.module_for(version).apply(meta, command, state)
        if not isinstance(result, tuple) or len(result) not in (2, 3):
            raise TypeError(f"apply must return (state, reply) or (state, reply, effects), got {result!r}")
        if len(result) == 2:
            return result[0], result[1], []
        return result[0], result[1], _as_list(result[2])

    def state_enter(self, version: int, role: str, state: Any) -> list:
        fn = getattr(self.module_for(version), "state_enter", None)
        return _as_list(fn(role, state)) if callable(fn) else []

    def has_tick(self, version: int) -> bool:
        return callable(getattr(self.module_for(version), "tick", None))

    def tick(self, version: int, time_ms: int, state: Any) -> list:
        fn = getattr(self.module_for(version), "tick", None)
        return _as_list(fn(time_ms, state)) if callable(fn) else []

    def overview(self, version: int, state: Any) -> Any:
        fn = getattr(self.module_for(version), "overview", None)
        return fn(state) if callable(fn) else {}

    def snapshot_installed(self, version: int, meta: Any, state: Any) -> list:
        fn = getattr(self.module_for(version), "snapshot_installed", None)
        return _as_list(fn(meta, state)) if callable(fn) else []
