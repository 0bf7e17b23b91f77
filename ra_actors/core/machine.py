"""The machine behaviour (Ra's ``ra_machine``) and its adapter.

A machine is any object (usually a module) with::

    init(config: dict) -> state
    apply(meta, command, state) -> (state, reply) | (state, reply, effects)

and optionally ``state_enter(role, state) -> effects``, ``tick(time_ms,
state) -> effects``, ``overview(state) -> dict``, ``version() -> int``,
``which_module(version) -> machine``, ``snapshot_installed(meta, state,
old_meta, old_state) -> effects`` (or Ra's older two-argument form
``snapshot_installed(meta, state)``), and Ra's aux (v2) pair
``init_aux(name) -> aux_state`` and ``handle_aux(role, kind, command,
aux_state, internal) -> (aux_state, reply) | (aux_state, reply, effects)``
(``kind`` is ``"call"`` or ``"cast"``; ``reply`` :data:`NO_REPLY` for none;
``internal``: :class:`ra_actors.core.aux.AuxView`).  ``apply`` must be
deterministic: same meta, command and state, same result, on every member.
``effects`` may be a single effect or a list.

:class:`SimpleMachine` is Ra's simple form (``{simple, Fun, Init}``): a
function of (command, state) returning the next state, which is also the
reply.

*Disk machines* (``DISK = True``) keep their state in files under a
directory the shell gives them, instead of in a Python value.  They provide
``open(directory, config) -> state`` (a handle) instead of ``init``, and
``applied_index(state)``, ``applied_reply(state, index)``, ``snapshot(state)
-> bytes``, ``install(state, image, index) -> state`` and ``close(state)``
(and optionally ``release(state, index)``: the snapshot at ``index`` is
durable, what was kept for replays at or below it may go).
Their ``apply`` changes the files and records ``meta.index`` and the reply
in one atomic step.  The adapter never hands such a machine an entry at or
below ``applied_index``: the recorded reply stands in for it (a replay after
a crash skips exactly what the files hold).  The contract in full:
``docs/machine-tutorial.rst``, section 7.

Rule: the core never imports machines; the shell loads the module (by import
path) and hands it to :class:`Machine`.  This module does no I/O: a disk
machine's callbacks do theirs, on the directory the shell chose.
``which_module`` is looked up once, when the :class:`Machine` is made.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from . import readonly

NO_REPLY = "$ra_no_reply"

#: The callbacks a disk machine must have (besides ``apply``).
DISK_CALLBACKS = ("open", "applied_index", "applied_reply", "snapshot", "install", "close")


def is_disk_machine(impl: Any) -> bool:
    """True if ``impl`` declares itself a disk machine (``DISK = True``)."""
    return getattr(impl, "DISK", False) is True


def _as_list(effects: Any) -> list:
    if effects is None:
        return []
    if isinstance(effects, (list, tuple)) and not hasattr(effects, "__dataclass_fields__"):
        return list(effects)
    return [effects]


def check_machine(impl: Any) -> None:
    """Raise ``TypeError`` unless ``impl`` has the callbacks its kind needs."""
    if is_disk_machine(impl):
        missing = [n for n in DISK_CALLBACKS + ("apply",) if not callable(getattr(impl, n, None))]
        if missing:
            raise TypeError(f"{impl!r} says DISK = True but lacks {', '.join(missing)}")
    elif not callable(getattr(impl, "init", None)) or not callable(getattr(impl, "apply", None)):
        raise TypeError(f"{impl!r} is not a machine: it needs init(config) and apply(meta, cmd, state)")


class Machine:
    """Uniform access to a user machine's required and optional callbacks."""

    def __init__(self, impl: Any, directory: Any = None):
        check_machine(impl)
        self.disk = is_disk_machine(impl)
        if self.disk and directory is None:
            raise TypeError(f"{impl!r} is a disk machine: it needs a directory from the server's store")
        self.impl = impl
        _check_handle_aux(impl)
        self._aux_checked: set[int] = set()   # ids of version modules whose handle_aux was checked
        # Where a disk machine keeps its files (a path, or the simulator's
        # file store): chosen by the shell, opaque here.
        self.directory = directory
        # (looked up once: a module without it would raise and format an
        # AttributeError inside getattr for every command applied)
        which = getattr(impl, "which_module", None)
        self._which_module = which if callable(which) else None

    # -- versioning -------------------------------------------------------
    def version(self) -> int:
        fn = getattr(self.impl, "version", None)
        return int(fn()) if callable(fn) else 0

    def module_for(self, version: int) -> Any:
        fn = self._which_module
        return fn(version) if fn is not None else self.impl

    # -- callbacks ----------------------------------------------------------
    def init(self, config: dict) -> Any:
        if self.disk:
            return self.impl.open(self.directory, config)
        return self.impl.init(config)

    def apply(self, version: int, meta: Any, command: Any, state: Any) -> tuple[Any, Any, list]:
        if self.disk and meta.index <= self.impl.applied_index(state):
            # The files already hold this entry (replay after a crash, or a
            # log that lost entries the files had): apply nothing, answer as then.
            return state, self.impl.applied_reply(state, meta.index), []
        result = self.module_for(version).apply(meta, command, state)
        if not isinstance(result, tuple) or len(result) not in (2, 3):
            raise TypeError(f"apply must return (state, reply) or (state, reply, effects), got {result!r}")
        if len(result) == 2:
            return result[0], result[1], []
        return result[0], result[1], _as_list(result[2])

    # -- disk machines ---------------------------------------------------------
    def applied_index(self, state: Any) -> int:
        return int(self.impl.applied_index(state)) if self.disk else 0

    def snapshot_image(self, state: Any) -> bytes:
        """A consistent copy of a disk machine's files at ``applied_index``."""
        image = self.impl.snapshot(state)
        if not isinstance(image, (bytes, bytearray, memoryview)):
            raise TypeError(f"snapshot must return bytes, got {type(image).__name__}")
        return bytes(image)

    def install(self, state: Any, image: bytes, index: int) -> Any:
        """Replace a disk machine's files by ``image`` (the copy at ``index``)."""
        state = self.impl.install(state, image, index)
        got = self.applied_index(state)
        if got != index:
            raise RuntimeError(f"after installing the snapshot at {index} the machine says it applied {got}")
        return state

    def released(self, state: Any, index: int) -> None:
        """The snapshot at ``index`` is durable (a disk machine may forget
        what it kept to replay the entries at or below it)."""
        fn = getattr(self.impl, "release", None)
        if self.disk and callable(fn):
            fn(state, index)

    def close(self, state: Any) -> None:
        if self.disk:
            self.impl.close(state)

    def query_state(self, state: Any) -> Any:
        """What a query function is given: a read-only view of a value, or
        for a disk machine its ``query_view(state)`` if it has one, else its
        handle (the machine keeps its queries read-only)."""
        if not self.disk:
            return readonly.view(state)
        fn = getattr(self.impl, "query_view", None)
        return fn(state) if callable(fn) else state

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

    def snapshot_installed(self, version: int, meta: Any, state: Any, old_meta: Any = None,
                           old_state: Any = None) -> list:
        fn = getattr(self.module_for(version), "snapshot_installed", None)
        if not callable(fn):
            return []
        if _positional_arity(fn) >= 4:
            return _as_list(fn(meta, state, old_meta, old_state))
        return _as_list(fn(meta, state))

    # -- aux (Ra's v2 handle_aux/5) ------------------------------------------
    def has_aux(self, version: int) -> bool:
        return callable(getattr(self.module_for(version), "handle_aux", None))

    def init_aux(self, version: int, name: str) -> Any:
        fn = getattr(self.module_for(version), "init_aux", None)
        return fn(name) if callable(fn) else None

    def handle_aux(self, version: int, role: str, kind: str, command: Any, aux_state: Any,
                   internal: Any) -> tuple[Any, Any, list]:
        module = self.module_for(version)
        if module is not self.impl and id(module) not in self._aux_checked:
            _check_handle_aux(module)
            self._aux_checked.add(id(module))
        result = module.handle_aux(role, kind, command, aux_state, internal)
        if not isinstance(result, tuple) or len(result) not in (2, 3):
            raise TypeError(f"handle_aux must return (aux_state, reply) or (aux_state, reply, effects), "
                            f"got {result!r:.200}")
        if len(result) == 2:
            return result[0], result[1], []
        return result[0], result[1], _as_list(result[2])


def _check_handle_aux(impl: Any) -> None:
    """Only Ra's v2 form is taken: ``handle_aux(role, kind, command,
    aux_state, internal)``."""
    fn = getattr(impl, "handle_aux", None)
    if not callable(fn):
        return
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return   # (a builtin: nothing to check before calling it)
    takes = sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    if takes < 5 and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise TypeError(f"{impl!r:.100}.handle_aux must take (role, kind, command, aux_state, internal)")


def _positional_arity(fn: Callable) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 4
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


class SimpleMachine:
    """Ra's simple machine: ``fun(command, state) -> next state``; the next
    state is the reply too.  ``init`` returns the cluster config's
    ``initial_state`` (None if absent)."""

    def __init__(self, fun: Callable[[Any, Any], Any]) -> None:
        self.fun = fun

    def init(self, config: dict) -> Any:
        return config.get("initial_state")

    def apply(self, meta: Any, command: Any, state: Any) -> tuple[Any, Any]:
        nxt = self.fun(command, state)
        return nxt, nxt
