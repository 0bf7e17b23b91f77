"""msgpack encoding of everything ra_actors stores or validates.

This is the implementation, inside the core so that the core imports
nothing outside itself; :mod:`ra_actors.codec` is the public face (it turns
an encoding failure into ``errors.InvalidCommand``).

Rules:

* On disk everything is msgpack; nothing read from disk is ever unpickled.
* Decoding uses ``use_list=False``: sequences come back as tuples.  Clients
  normalise commands through :func:`normalise` before sending them, so the
  leader applies exactly the value a recovering follower will read back
  from disk (``apply`` must see the same value on every member).
* ``ServerId``, ``ActorRef``, the dataclasses of :mod:`ra_actors.core.types`
  and the built-in commands and machine effects of
  :mod:`ra_actors.core.effects` travel as tagged records, looked up in a
  fixed registry (never by importing a name found in the data).  A tag is a
  class name, so two registered classes never share a name.
* A few nests of records that every session command is made of travel as
  one flat array under a fixed compact tag starting with ``~`` (see
  "compact forms" below); the records' own tagged forms still decode.
* Anything else that msgpack cannot encode raises :class:`EncodeError`.
* Enum members travel as their values (roles are ``StrEnum`` members).
"""
from __future__ import annotations

import dataclasses
import enum
import operator
import types
import typing
from typing import Any, Callable

import msgpack

from . import effects as _effects
from . import types as _types
from .types import ActorRef, ServerId


class EncodeError(ValueError):
    """A value msgpack cannot encode (the message says which)."""

EXT_SERVER_ID = 1      # (read only) ServerId as its own msgpack document
EXT_RECORD = 2         # (read only) a record as its own msgpack document
EXT_ACTOR_REF = 3      # (read only) ActorRef as its own msgpack document
EXT_TAG = 4            # a record's tag: the first element of the array holding its fields

# Encoding: a record is an array ``[tag, field, field, ...]`` whose first
# element is ``ExtType(EXT_TAG, b"ClassName")``, packed in place by the same
# packer (a list per record; packing each record into a nested document of
# its own costs ~10 times more per WAL entry).  ``ServerId`` and ``ActorRef``
# are tagged records too.  Documents in the older nested form
# (``EXT_RECORD``, ``EXT_SERVER_ID``, ``EXT_ACTOR_REF``) still decode: data
# written by earlier versions must stay readable.

_REGISTRY: dict[str, type] = {}
_FIELDS: dict[type, tuple] = {}       # class -> (tag, field names)
_ENCODERS: dict[type, Callable[[Any], list]] = {}   # class -> record -> [tag, field, ...]
_TAGS: dict[bytes, "_Tag"] = {}


def _encoder(tag: msgpack.ExtType, names: tuple) -> Callable[[Any], list]:
    """``record -> [tag, field, ...]`` (an ``attrgetter`` reads the fields:
    every entry of every WAL batch and replication frame goes through here)."""
    if not names:
        return lambda obj: [tag]
    if len(names) == 1:
        one = operator.attrgetter(names[0])
        return lambda obj: [tag, one(obj)]
    many = operator.attrgetter(*names)
    return lambda obj: [tag, *many(obj)]


class _Tag:
    """A decoded tag (only ever the first element of a record's array):
    ``build(*fields)`` makes the value (the record's class, or a compact
    form's builder); ``validate(fields)`` does the same with every field
    checked (compiled on first use from the wire)."""

    __slots__ = ("cls", "build", "validate")

    def __init__(self, cls, build=None, validate=None):
        self.cls = cls
        self.build = cls if build is None else build
        self.validate = validate


def register(cls: type) -> type:
    """Allow dataclass ``cls`` to be encoded (by name) and decoded.  A record
    travels under its class name, so two classes may not share one."""
    other = _REGISTRY.get(cls.__name__)
    if other is not None and other is not cls:
        raise ValueError(f"two records named {cls.__name__}: {other.__module__} and {cls.__module__}")
    _REGISTRY[cls.__name__] = cls
    names = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else cls._fields
    _FIELDS[cls] = (msgpack.ExtType(EXT_TAG, cls.__name__.encode()), names)
    _ENCODERS[cls] = _encoder(*_FIELDS[cls])
    _TAGS[cls.__name__.encode()] = _Tag(cls)
    return cls


# What can reach a disk or a wire: the core's records, and the commands and
# machine effects a log entry may hold.  Server effects (SendRpc, Applied,
# ...) never leave the process that interprets them.
for _name in dir(_types):
    _obj = getattr(_types, _name)
    if isinstance(_obj, type) and dataclasses.is_dataclass(_obj) and _obj.__module__ == _types.__name__:
        register(_obj)
for _obj in _effects.BUILTIN_COMMANDS + _effects.MACHINE_EFFECTS:
    register(_obj)
register(ServerId)
register(ActorRef)


def _default(obj: Any):
    encode = _ENCODERS.get(type(obj))
    if encode is not None:
        return encode(obj)
    if type(obj) is tuple:
        # strict_types sends plain tuples here so that NamedTuples (ServerId)
        # are not silently flattened into arrays.
        return list(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, enum.Enum):
        return obj.value
    raise TypeError(f"cannot serialise {type(obj).__name__} value {obj!r}")


def _list_hook(seq):
    if seq and type(seq[0]) is _Tag:
        return seq[0].build(*seq[1:])
    return seq


def _ext_hook(code: int, data: bytes):
    if code == EXT_TAG:
        tag = _TAGS.get(data)
        if tag is None:
            raise ValueError(f"unknown record type {data!r}")
        return tag
    if code == EXT_SERVER_ID:
        name, node = msgpack.unpackb(data, use_list=False, raw=False)
        return ServerId(name, node)
    if code == EXT_ACTOR_REF:
        name, node = msgpack.unpackb(data, use_list=False, raw=False)
        return ActorRef(name, node)
    if code == EXT_RECORD:
        name, fields = msgpack.unpackb(data, ext_hook=_ext_hook, list_hook=_list_hook, use_list=False,
                                       raw=False, strict_map_key=False)
        cls = _REGISTRY.get(name)
        if cls is None:
            raise ValueError(f"unknown record type {name!r}")
        return cls(*fields)
    return msgpack.ExtType(code, data)


class _Packers:
    """Packers to reuse: ``msgpack.packb`` makes (and allocates a 1 MiB
    buffer for) a new ``Packer`` on every call, a third of the cost of
    encoding a WAL entry.  A caller takes a packer from the pool for the
    time of one ``pack`` (``list.pop``/``append`` are atomic: no two
    threads, and no re-entrant call, ever share one); a packer whose
    buffer grew past ``KEEP_BYTES`` is not kept."""

    KEEP_BYTES = 1 << 20
    SPARE = 4

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._spare: list = []

    def pack(self, value: Any) -> bytes:
        spare = self._spare
        try:
            packer = spare.pop()
        except IndexError:
            packer = msgpack.Packer(**self._options)
        data = packer.pack(value)           # (raises: the packer is dropped)
        if len(data) <= self.KEEP_BYTES and len(spare) < self.SPARE:
            spare.append(packer)
        return data


_PACKERS = _Packers(default=_default, use_bin_type=True, strict_types=True)


def pack(value: Any) -> bytes:
    """Encode ``value``; raise :class:`EncodeError` if it is not serialisable."""
    try:
        return _PACKERS.pack(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"value is not msgpack-serialisable: {exc}") from None


def unpack(data: bytes) -> Any:
    """Decode bytes produced by :func:`pack` (sequences become tuples)."""
    return msgpack.unpackb(data, ext_hook=_ext_hook, list_hook=_list_hook, use_list=False, raw=False,
                           strict_map_key=False)


def normalise(value: Any) -> Any:
    """``unpack(pack(value))``: the canonical form every member will see."""
    return unpack(pack(value))


class DecodeError(ValueError):
    """Bytes that do not decode to well-formed records (the message says why)."""


# ------------------------------------------------------ validating records
# A record's fields are checked against its annotations: ``Any`` accepts
# anything; ``int``, ``str``, ``bytes``, ``bool``, ``tuple`` and ``dict`` by
# exact type (``float`` also takes an int); another class accepts its
# instances; ``X | Y`` and ``Optional`` accept either; ``tuple[X, ...]``
# checks every element.  Other annotations are not checked.  Each record's
# checks are compiled into one expression: this runs for every entry of
# every AppendEntriesRpc a follower receives.
_EXACT = (int, str, bytes, bool, tuple, dict)
_VALIDATORS: dict[type, Callable[[tuple], Any]] = {}


def _expr(tp: Any, var: str, names: dict) -> str | None:
    """A Python expression testing ``var`` against ``tp`` (None: no test)."""
    if tp is Any:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if all(isinstance(a, type) and a not in _EXACT and a is not float for a in args if a is not type(None)):
            key = f"_t{len(names)}"
            names[key] = tuple(a for a in args if a is not type(None))
            test = f"isinstance({var}, {key})"
            return f"({var} is None or {test})" if type(None) in args else test
        parts = [_expr(a, var, names) for a in args]
        if any(p is None for p in parts):
            return None
        return "(" + " or ".join(parts) + ")"
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            inner = _expr(args[0], "_e", names)
            if inner is not None:
                return f"(type({var}) is tuple and all({inner} for _e in {var}))"
        return f"type({var}) is tuple"
    if tp is type(None):
        return f"{var} is None"
    if tp is float:
        return f"type({var}) in (int, float)"
    if tp in _EXACT:
        return f"type({var}) is {tp.__name__}"
    if isinstance(tp, type):
        key = f"_t{len(names)}"
        names[key] = tp
        return f"isinstance({var}, {key})"
    return None


def _validator(cls: type) -> Callable[[tuple], Any]:
    """``values -> record``: builds ``cls(*values)`` and checks its fields,
    raising :class:`DecodeError` on a mismatch."""
    found = _VALIDATORS.get(cls)
    if found is not None:
        return found
    hints = typing.get_type_hints(cls)
    fields = (tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls)
              else cls._fields)
    names: dict[str, Any] = {"_cls": cls, "_bad": _bad_record, "_new": object.__new__}
    tests = []
    for field in fields:
        test = _expr(hints.get(field, Any), f"r.{field}", names)
        if test is not None:
            tests.append(test)
    body = "def validate(values):\n"
    slots = _plain_slots(cls, fields)
    if slots:
        # Every field given: set the slots as the generated __init__ would,
        # without its frame and its object.__setattr__ per field (a
        # follower builds four records per entry it receives).
        for i, setter in enumerate(slots):
            names[f"_set{i}"] = setter
        body += (f"    if len(values) == {len(slots)}:\n"
                 "        r = _new(_cls)\n"
                 + "".join(f"        _set{i}(r, values[{i}])\n" for i in range(len(slots)))
                 + "    else:\n")
    else:
        body += "    if True:\n"
    body += ("        try:\n"
             "            r = _cls(*values)\n"
             "        except TypeError as exc:\n"
             "            _bad(_cls, None, exc)\n")
    if tests:
        body += f"    if not ({' and '.join(tests)}):\n        _bad(_cls, r, None)\n"
    body += "    return r\n"
    exec(compile(body, f"<validator {cls.__name__}>", "exec"), names)   # noqa: S102 - our own annotations
    found = _VALIDATORS[cls] = names["validate"]
    return found


def _plain_slots(cls: type, fields: tuple) -> tuple | None:
    """The slot setters of a slotted dataclass whose ``__init__`` only
    assigns its fields in order (no ``__post_init__``, every field an init
    argument); None for any other class (it is built by calling it)."""
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__") or not fields:
        return None
    init = cls.__dict__.get("__init__")
    if (not cls.__dataclass_params__.init or not all(f.init for f in dataclasses.fields(cls))
            or "__create_fn__" not in getattr(getattr(init, "__code__", None), "co_qualname", "")):
        return None     # (an __init__ not made by dataclasses: it may do more than assign)
    setters = []
    for name in fields:
        slot = cls.__dict__.get(name)
        if type(slot) is not types.MemberDescriptorType:
            return None
        setters.append(slot.__set__)
    return tuple(setters)


def record_builder(cls: type) -> Callable[..., Any]:
    """``(*every field) -> cls(*every field)`` for hot paths that build many
    records of values they have already checked: a slotted dataclass whose
    ``__init__`` only assigns gets its slots set directly (a frozen
    dataclass's generated ``__init__`` pays an ``object.__setattr__`` per
    field); any other class is returned as it is.  Every field is given, in
    order: the builder knows no defaults."""
    fields = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else ()
    slots = _plain_slots(cls, fields)
    if not slots:
        return cls
    names: dict[str, Any] = {"_cls": cls, "_new": object.__new__}
    for i, setter in enumerate(slots):
        names[f"_set{i}"] = setter
    body = (f"def build({', '.join(f'v{i}' for i in range(len(slots)))}):\n"
            "    r = _new(_cls)\n"
            + "".join(f"    _set{i}(r, v{i})\n" for i in range(len(slots)))
            + "    return r\n")
    exec(compile(body, f"<builder {cls.__name__}>", "exec"), names)   # noqa: S102 - our own field names
    return names["build"]


def _bad_record(cls: type, record: Any, exc: BaseException | None):
    if exc is not None:
        raise DecodeError(f"{cls.__name__}: {exc}")
    raise DecodeError(f"{cls.__name__} with a field that does not fit its type: {record!r:.200}")


def _validating_list_hook(seq):
    if seq and type(seq[0]) is _Tag:
        tag = seq[0]
        validate = tag.validate
        if validate is None:
            validate = tag.validate = _validator(tag.cls)
        return validate(seq[1:])
    return seq


# ------------------------------------------------------------ compact forms
# Every command of a client with a session is a log entry ``Entry(index,
# term, Usr(data, NotifyReply(correlation, client), ts, SessionSeq(session,
# seq, low, known)))``: four tagged records, each packed through ``default``
# and decoded (from the wire: validated) through the list hook, on the
# leader, on every follower and in every WAL.  A nest of records of a known
# shape is therefore written as ONE flat array under a short tag.  A compact
# tag starts with ``~``, which no class name does, so no record can take it:
#
#   ~U  Usr(data, NotifyReply(correlation, client), ts, SessionSeq(...))
#       [~U, data, correlation, client, ts, session, seq, low, known]
#   ~S  Usr(data, reply_mode, ts, SessionSeq(...)) (any other reply mode)
#       [~S, data, reply_mode, ts, session, seq, low, known]
#   ~E  Entry(index, term, Usr of the ~U shape)
#       [~E, index, term, data, correlation, client, ts, session, seq, low, known]
#
# A value decodes to the same records whichever form wrote it, and the
# records' own tagged forms (all that earlier versions wrote) still decode.
# From the wire a compact form must have exactly its number of fields, and
# each field gets the check its record's annotation gives it (the nested
# records are built here, so they are of the class their parent expects).
# The forms are fixed: changing one is a format change (add a tag instead).

def _shape(cls: type, **nested: tuple) -> tuple:
    """A compact form's shape: record class ``cls``, the fields named in
    ``nested`` holding records of their own shapes, flattened in place."""
    return (cls, nested)


_U_SHAPE = _shape(_types.Usr, reply_mode=_shape(_types.NotifyReply), session=_shape(_types.SessionSeq))
_FORMS: dict[type, tuple] = {
    _types.Usr: ((b"~U", _U_SHAPE),
                 (b"~S", _shape(_types.Usr, session=_shape(_types.SessionSeq)))),
    _types.Entry: ((b"~E", _shape(_types.Entry, command=_U_SHAPE)),),
}


def _bad_form(form: str, values: Any) -> None:
    raise DecodeError(f"compact record {form} with fields that do not fit its shape: {values!r:.200}")


def _compile_form(tag: bytes, shape: tuple) -> tuple[str, str, Callable, Callable, dict]:
    """``(match, fields, build, validate, classes)`` for a compact form:
    ``match`` and ``fields`` are expressions on a record ``o`` (is it of
    this shape; its flat array) over the names in ``classes``, for the
    class's encoder; ``build(*values)`` and ``validate(values)`` make the
    records from the flat fields."""
    names: dict[str, Any] = {"_new": object.__new__, "_bad": _bad_form, "_form": tag.decode()}
    leaves: list[str] = []      # the record's fields in flat order, as expressions on ``o``
    conds: list[str] = []       # the nested records' exact classes
    tests: list[str] = []       # wire checks of the flat values
    lines: list[str] = []       # building the records from v0, v1, ...
    count = [0]
    prefix = f"_{tag[1:].decode()}"

    def walk(shape: tuple, expr: str) -> str:
        cls, nested = shape
        k = count[0]
        count[0] += 1
        names[f"{prefix}c{k}"] = cls
        hints = typing.get_type_hints(cls)
        fields = tuple(f.name for f in dataclasses.fields(cls))
        if set(nested) - set(fields):
            raise ValueError(f"{cls.__name__} has no field {sorted(set(nested) - set(fields))}")
        args = []
        for field in fields:
            if field in nested:
                conds.append(f"type({expr}.{field}) is {prefix}c{count[0]}")
                args.append(walk(nested[field], f"{expr}.{field}"))
            else:
                var = f"v{len(leaves)}"
                leaves.append(f"{expr}.{field}")
                test = _expr(hints.get(field, Any), var, names)
                if test is not None:
                    tests.append(test)
                args.append(var)
        setters = _plain_slots(cls, fields)
        if setters is None:
            lines.append(f"r{k} = {prefix}c{k}({', '.join(args)})")
        else:
            lines.append(f"r{k} = _new({prefix}c{k})")
            for i, (setter, arg) in enumerate(zip(setters, args)):
                names[f"{prefix}s{k}_{i}"] = setter
                lines.append(f"{prefix}s{k}_{i}(r{k}, {arg})")
        return f"r{k}"

    walk(shape, "o")
    n = len(leaves)
    params = ", ".join(f"v{i}" for i in range(n))
    body = "".join(f"    {line}\n" for line in lines) + "    return r0\n"
    src = (f"def build({params}):\n{body}"
           f"def validate(values):\n"
           f"    if len(values) != {n}:\n        _bad(_form, values)\n"
           f"    {params}, = values\n"
           + (f"    if not ({' and '.join(tests)}):\n        _bad(_form, values)\n" if tests else "")
           + body)
    exec(compile(src, f"<compact form {tag.decode()}>", "exec"), names)   # noqa: S102 - our own shapes
    classes = {k: v for k, v in names.items() if k.startswith(f"{prefix}c")}
    return " and ".join(conds), ", ".join(leaves), names["build"], names["validate"], classes


def _compile_forms() -> None:
    """Install the compact forms: each class's encoder tries its forms in
    order, then writes the plain tagged record; each tag decodes."""
    for cls, forms in _FORMS.items():
        tag, fields = _FIELDS[cls]
        names: dict[str, Any] = {"_tag": tag}
        body = "def encode(o):\n"
        for i, (form_tag, shape) in enumerate(forms):
            if not form_tag.startswith(b"~") or form_tag in _TAGS:
                raise ValueError(f"compact tag {form_tag!r}: must start with ~ and be new")
            match, flat, build, validate, classes = _compile_form(form_tag, shape)
            names.update(classes)
            names[f"_tag{i}"] = msgpack.ExtType(EXT_TAG, form_tag)
            body += f"    if {match}:\n        return [_tag{i}, {flat}]\n"
            _TAGS[form_tag] = _Tag(cls, build, validate)
        body += f"    return [_tag, {', '.join('o.' + f for f in fields)}]\n"
        exec(compile(body, f"<encoder {cls.__name__}>", "exec"), names)   # noqa: S102 - our own shapes
        _ENCODERS[cls] = names["encode"]


_compile_forms()


class Codec:
    """The same encoding over a larger registry: the base records plus
    ``classes`` (dataclasses or NamedTuples).  The replication stream
    (:mod:`ra_actors.actors.stream`) uses one that also knows the runtime's
    messages; what goes to disk uses the module functions above.

    With ``wire=True`` (bytes from the network) decoding is strict: only
    tagged records (not the older nested forms, whose decoding recurses),
    every record's fields checked against its annotations, and any failure
    is a :class:`DecodeError` -- never anything else.
    """

    def __init__(self, classes=(), *, wire: bool = False):
        self.wire = wire
        encoders = dict(_ENCODERS)
        tags = dict(_TAGS)
        for cls in classes:
            other = tags.get(cls.__name__.encode())
            if other is not None and other.cls is not cls:
                raise ValueError(f"two records named {cls.__name__}: {other.cls.__module__} and {cls.__module__}")
            names = (tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls)
                     else cls._fields)
            encoders[cls] = _encoder(msgpack.ExtType(EXT_TAG, cls.__name__.encode()), names)
            tags[cls.__name__.encode()] = _Tag(cls)

        def default(obj):
            encode = encoders.get(type(obj))
            if encode is not None:
                return encode(obj)
            return _default(obj)

        def ext_hook(code, data):
            if code == EXT_TAG:
                tag = tags.get(data)
                if tag is None:
                    raise ValueError(f"unknown record type {data!r}")
                return tag
            if wire:
                raise DecodeError(f"extension type {code} is not accepted from the network")
            return _ext_hook(code, data)

        self._default = default
        self._packers = _Packers(default=default, use_bin_type=True, strict_types=True)
        self._ext_hook = ext_hook

    def pack(self, value: Any) -> bytes:
        """Raises ``TypeError``/``ValueError`` for what it cannot encode."""
        return self._packers.pack(value)

    def unpack(self, data: bytes) -> Any:
        if not self.wire:
            return msgpack.unpackb(data, ext_hook=self._ext_hook, list_hook=_list_hook, use_list=False,
                                   raw=False, strict_map_key=False)
        try:
            return msgpack.unpackb(data, ext_hook=self._ext_hook, list_hook=_validating_list_hook,
                                   use_list=False, raw=False, strict_map_key=False)
        except DecodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever msgpack says about hostile bytes
            raise DecodeError(f"{type(exc).__name__}: {exc}") from None
