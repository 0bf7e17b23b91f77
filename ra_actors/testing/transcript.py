"""Data-driven transcript tests of the pure Raft core (etcd raft's
``interaction_test.go`` + ``testdata/*.txt``, in the ``datadriven`` format).

A transcript is a text file of cases.  Each case is a directive line (with
arguments), optional input lines (no directive takes any yet), a ``----``
line, then the expected output; a blank line ends the case.  ``#`` lines
between cases are comments.  An output holding blank lines is written
between ``----``/``----`` pairs (datadriven's long form)::

    # a pre-vote round does not bump the term (thesis §9.6)
    tell n1 TriggerElection
    ----
    c@n1 <- TriggerElection
      role: pre_vote
      RoleChanged pre_vote
      SetElectionTimer long
      SendRpc c@n2 PreVoteRpc term=0 token=1 last=0/0 mv=0
      SendRpc c@n3 PreVoteRpc term=0 token=1 last=0/0 mv=0

Rules of this module:

* It is pure: it imports only :mod:`ra_actors.core`, :mod:`ra_actors.codec`
  and the standard library.  No Thespian, no clock, no randomness: a file
  always replays to the same output, byte for byte.
* Nothing happens by itself.  The harness never fires a timer, never
  delivers a message and never makes a write durable unless a directive
  says so; timer effects (``SetElectionTimer``...) are only printed.
* Every server is ``ServerId("c", NODE)``, named by its node in directives
  (``n1``; ``c@n1`` is accepted too).  Each runs :class:`TranscriptKv`.
* Network: every ``SendRpc`` (and ``ForwardCommand``, and the
  ``InstallSnapshotRpc`` the harness builds for a ``SendSnapshotChunk``
  from the sender's *durable* snapshot) joins one in-flight queue, kept in
  the order sent.  A message to a server that is down is dropped when it
  would be delivered; ``crash`` and ``restart`` drop the messages in flight
  to the server (they were addressed to a process that no longer exists).
* Storage: one in-memory disk per server with the semantics of
  :mod:`ra_actors.testing.disk` (writing entry ``i`` drops every index above
  it; an older snapshot never replaces a newer one; ``PersistLastApplied``
  is a hint that lands at once).  ``LogAppend`` and ``TruncateLogBelow``
  (the WAL), ``PersistMeta`` and ``WriteSnapshot`` stay *pending* until
  ``persist`` makes them durable, in the order they were issued, and feeds
  back ``Written`` (one per contiguous single-term run of a WAL batch),
  ``MetaWritten`` and ``SnapshotWritten``.  ``crash`` loses whatever is
  pending; ``restart`` rebuilds the server from what is durable through
  :class:`ra_actors.core.server.Recovered`, as the simulator does.
* The core counts a candidate's own vote without waiting for its
  ``MetaWritten``: it relies on the shell making meta durable before any
  RPC of the same round leaves (the Thespian store writes it
  synchronously).  A transcript that is to show what such a runtime does
  persists a candidate's meta before its RequestVoteRpc is read
  (``stabilize`` does: each round persists, then delivers).
* Output: every message a server handles is a step: a header ``SERVER <-
  [SENDER] MESSAGE``, then, indented, ``role: ROLE`` (the role after the
  message) and the effects, one per line, in the order the core returned
  them.  Other lines are the harness's (drops, crashes, restarts, durable
  truncations, ``state``).  Log positions print as ``index/term``, entries
  as ``index/term command``, snapshot metadata as ``index/term{members}``
  (non-voters with ``:membership``), ServerIds as ``name@node``.
  ``incarnation`` is never printed (always 0 here), nor an RPC's
  ``from_id`` when it is the sender.

Directives (``N`` is a server, ``(a,b)`` a list; ``[...]`` optional):

``add-servers N... [members=(N,...)] [joining=true] [chunk=B] [batch=E] [pipeline=E]``
    Create and ``init`` servers.  ``members`` defaults to the servers
    named; ``joining`` starts them to join a running cluster (no
    configuration until the log gives one); ``chunk`` is
    ``snapshot_chunk_size`` (bytes), ``batch`` ``max_append_entries_batch``
    and ``pipeline`` ``max_pipeline_count``.
``tell N MESSAGE [ARGS...]``
    Hand ``N`` one message from its shell or a client:
    ``TriggerElection``, ``ElectionTimeout``, ``AwaitConditionTimeout``,
    ``StepDownIfLeader``, ``Tick NOW_MS``, ``ServerDown N2 [REASON]``,
    ``NodeEvent NODE up|down``, ``Command WORD... [mode=sync|notify|noreply|after_append]
    [corr=C] [priority=low] [session=ID:SEQ[:LOW[:known]]] [ts=MS]``, ``AddMember N2 [voter|non_voter|promotable]``,
    ``RemoveMember N2``, ``TransferLeadership N2``, ``DeleteClusterCmd``,
    ``Members``, ``Query local|leader|consistent KEY``.  Replies go to
    ``from=NAME`` (default ``client``).
``deliver [from=(N,...)] [to=(N,...)] [type=(RpcName,...)] [count=K]``
    Deliver, in order, the messages in flight *now* that match (all by
    default; the first ``K``).  The messages they cause wait.
``drop [from=...] [to=...] [type=...] [count=K]``
    Lose the matching messages in flight.
``persist [N...] [only=(log,meta,snapshot)]``
    Make the pending writes of ``N`` (default: every server) durable and
    feed the notifications back.
``stabilize [N...]``
    Rounds of ``persist`` (the named servers, default all) then
    ``deliver`` (only messages between them), until a round does nothing.
``crash N... [durable=(log,meta,snapshot)]``
    The server's process dies: its pending writes are lost, except the
    kinds in ``durable``, which land without notification ("after fsync,
    before the reply").
``restart N...``
    Start a crashed or stopped server again from its durable state.
``state [N...]``
    Print each server's role, term, vote, leader, commit and applied
    indexes, log, configuration and machine state, its disk, and its
    pending writes.
``net [from=...] [to=...] [type=...]``
    Print the messages in flight.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import codec
from ..core import effects as fx
from ..core import messages as m
from ..core.effects import ReleaseCursor
from ..core.machine import Machine
from ..core.server import RaftServer, Recovered
from ..core.types import (VOTER, AfterLogAppend, AwaitConsensus, ClusterChange, DeleteCluster,
                          Entry, NoReply, Noop, NotifyReply, ServerConfig, ServerId, SessionSeq, SnapshotMeta,
                          Usr)

CLUSTER = "c"
SEPARATOR = "----"


class TranscriptError(Exception):
    """A transcript the harness cannot run (bad directive or argument)."""


# ================================================================ the machine
class TranscriptKv:
    """The machine every transcript server runs: a dict of strings.

    Commands are tuples of words: ``("put", k, v)`` sets ``k`` and replies
    the previous value (None if absent); ``("get", k)`` replies the value;
    ``("release",)`` replies ``released`` and releases the cursor at its
    own index (the core takes a snapshot); anything else (built-in
    commands) changes nothing and replies None.  ``apply`` never mutates
    the state it is given, so a snapshot state stays as it was."""

    @staticmethod
    def init(config: dict) -> dict:
        return {}

    @staticmethod
    def apply(meta, command, state: dict):
        if isinstance(command, tuple) and command:
            if command[0] == "put" and len(command) == 3:
                return {**state, command[1]: command[2]}, state.get(command[1])
            if command[0] == "get" and len(command) == 2:
                return state, state.get(command[1])
            if command[0] == "release":
                return state, "released", [ReleaseCursor(meta.index, state)]
        return state, None


def _read(state: dict, key: str):
    return state.get(key)


# ============================================================== file format
@dataclass(frozen=True, slots=True)
class Case:
    """One directive of a transcript and the output recorded for it."""

    line: int                  # 1-based line number of the directive
    directive: str             # the directive line, as written
    input: tuple[str, ...]     # lines between the directive and ``----``
    expected: str              # the recorded output ("" for none)


@dataclass(frozen=True, slots=True)
class Transcript:
    """A parsed file: comments and blank lines kept verbatim (``str``) in
    between the cases, so that :func:`render_file` can rewrite it in place."""

    path: str
    parts: tuple               # str (one verbatim line) | Case


def parse(text: str, path: str = "<transcript>") -> Transcript:
    lines = text.splitlines()
    parts: list = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            parts.append(line)
            i += 1
            continue
        start = i
        i += 1
        inputs = []
        while i < len(lines) and lines[i] != SEPARATOR:
            if not lines[i].strip():
                raise TranscriptError(f"{path}:{start + 1}: directive {line!r} has no {SEPARATOR} line")
            inputs.append(lines[i])
            i += 1
        if i == len(lines):
            raise TranscriptError(f"{path}:{start + 1}: directive {line!r} has no {SEPARATOR} line")
        i += 1
        out: list[str] = []
        if i < len(lines) and lines[i] == SEPARATOR:
            # Long form: the output ends at a ----/---- pair.
            i += 1
            while i < len(lines) and not (lines[i] == SEPARATOR and i + 1 < len(lines)
                                          and lines[i + 1] == SEPARATOR):
                out.append(lines[i])
                i += 1
            if i == len(lines):
                raise TranscriptError(f"{path}:{start + 1}: unterminated {SEPARATOR}/{SEPARATOR} output")
            i += 2
        else:
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
        parts.append(Case(start + 1, line, tuple(inputs), "\n".join(out)))
    return Transcript(path, tuple(parts))


def render_file(transcript: Transcript, outputs: dict[int, str]) -> str:
    """The file text with each case's output replaced by ``outputs[line]``."""
    out: list[str] = []
    for part in transcript.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        out.append(part.directive)
        out.extend(part.input)
        out.append(SEPARATOR)
        text = outputs.get(part.line, part.expected)
        if text and any(not ln.strip() for ln in text.split("\n")):
            out.extend([SEPARATOR, text, SEPARATOR, SEPARATOR])   # long form
        elif text:
            out.append(text)
    return "\n".join(out) + "\n"


# ================================================================ arguments
@dataclass(frozen=True, slots=True)
class Directive:
    name: str
    args: tuple[str, ...]          # positional words
    kwargs: dict = field(default_factory=dict)  # key -> str | tuple[str, ...]


def parse_directive(line: str) -> Directive:
    """Split ``name word key=value key=(a,b)`` (lists may hold spaces)."""
    tokens, buf, depth = [], "", 0
    for ch in line.strip():
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch.isspace() and depth == 0:
            if buf:
                tokens.append(buf)
            buf = ""
        else:
            buf += ch
    if depth:
        raise TranscriptError(f"unbalanced parentheses in {line!r}")
    if buf:
        tokens.append(buf)
    args, kwargs = [], {}
    for tok in tokens[1:]:
        key, eq, value = tok.partition("=")
        if not eq:
            args.append(tok)
        elif value.startswith("(") and value.endswith(")"):
            kwargs[key] = tuple(v.strip() for v in value[1:-1].split(",") if v.strip())
        else:
            kwargs[key] = value
    return Directive(tokens[0], tuple(args), kwargs)


def _as_list(value) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else (value,)


def _flag(value: str) -> bool:
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise TranscriptError(f"not a boolean: {value!r}")


# ================================================================ rendering
def fmt(value: Any) -> str:
    """Compact, deterministic text for a value inside an effect or message."""
    if isinstance(value, ServerId):
        return f"{value.name}@{value.node}"
    if isinstance(value, Entry):
        return f"{value.index}/{value.term} {_fmt_command(value.command)}"
    if isinstance(value, SnapshotMeta):
        mv = f" mv={value.machine_version}" if value.machine_version else ""
        return f"{value.index}/{value.term}{_fmt_cluster(value.cluster)}{mv}"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(fmt(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{fmt(k)}: {fmt(value[k])}" for k in sorted(value, key=repr)) + "}"
    if dataclasses.is_dataclass(value):
        # Nested records (reply modes, machine effects) print positionally
        # (an AwaitConsensus answered by the leader, as usual, shows no
        # reply_from; an Error the server did take shows no refused flag).
        fields = ", ".join(fmt(getattr(value, f.name)) for f in dataclasses.fields(value)
                           if f.name != "incarnation"
                           and not (f.name == "reply_from" and getattr(value, f.name) is None)
                           and not (f.name == "refused" and getattr(value, f.name) is False))
        return f"{type(value).__name__}({fields})"
    if callable(value):
        return "<fun>"
    return str(value)


def _fmt_cluster(cluster: tuple) -> str:
    members = []
    for sid, membership in cluster:
        members.append(fmt(ServerId(*sid)) + ("" if membership == VOTER else f":{membership}"))
    return "{" + " ".join(members) + "}"


def _session(text: str) -> SessionSeq:
    """``ID:SEQ[:LOW[:known]]`` -> a SessionSeq (LOW defaults to SEQ)."""
    parts = text.split(":")
    if len(parts) < 2:
        raise TranscriptError(f"session={text!r}: write session=ID:SEQ[:LOW[:known]]")
    seq = int(parts[1])
    low = int(parts[2]) if len(parts) > 2 else seq
    return SessionSeq(parts[0], seq, low, len(parts) > 3 and parts[3] == "known")


def _fmt_command(cmd: Any) -> str:
    if isinstance(cmd, Noop):
        return "noop" + (f"(v{cmd.machine_version})" if cmd.machine_version else "")
    if isinstance(cmd, Usr):
        data = cmd.data
        text = (" ".join(str(d) for d in data) if isinstance(data, tuple) and all(isinstance(d, (str, int)) for d in data)
                else fmt(data))
        if cmd.session is not None:
            s = cmd.session
            text += f" @{s.session}#{s.seq}" + (f"(low {s.low})" if s.low != s.seq else "") + ("+known" if s.known else "")
        return text
    if isinstance(cmd, ClusterChange):
        return "cluster" + _fmt_cluster(cmd.cluster)
    if isinstance(cmd, DeleteCluster):
        return "delete_cluster"
    return fmt(cmd)


def _fmt_entries(entries: Iterable[Entry]) -> str:
    return "[" + ", ".join(fmt(e) for e in entries) + "]"


def _fmt_record(rec: Any, sender: ServerId | None = None) -> str:
    """``Name field=value ...``: every field but ``incarnation`` and a
    ``from_id`` equal to ``sender``."""
    special = _RECORD_FORMATS.get(type(rec))
    if special is not None:
        sender_differs = getattr(rec, "from_id", sender) != sender
        return special(rec) + (f" from={fmt(rec.from_id)}" if sender_differs else "")
    parts = [type(rec).__name__]
    for f in dataclasses.fields(rec):
        value = getattr(rec, f.name)
        if f.name == "incarnation" or (f.name == "from_id" and value == sender):
            continue
        parts.append(f"{f.name.rstrip('_')}={fmt(value)}")
    return " ".join(parts)


def _pos(index: int, term: int) -> str:
    return f"{index}/{term}"


_RECORD_FORMATS: dict[type, Callable[[Any], str]] = {
    m.AppendEntriesRpc: lambda r: (f"AppendEntriesRpc term={r.term} prev={_pos(r.prev_log_index, r.prev_log_term)} "
                                   f"commit={r.leader_commit} entries={_fmt_entries(r.entries)}"),
    m.AppendEntriesReply: lambda r: (f"AppendEntriesReply term={r.term} success={r.success} "
                                     f"next={r.next_index} last={_pos(r.last_index, r.last_term)}"),
    m.PreVoteRpc: lambda r: (f"PreVoteRpc term={r.term} token={r.token} "
                             f"last={_pos(r.last_log_index, r.last_log_term)} mv={r.machine_version}"),
    m.PreVoteResult: lambda r: f"PreVoteResult term={r.term} token={r.token} granted={r.vote_granted}",
    m.RequestVoteRpc: lambda r: f"RequestVoteRpc term={r.term} last={_pos(r.last_log_index, r.last_log_term)}",
    m.RequestVoteResult: lambda r: f"RequestVoteResult term={r.term} granted={r.vote_granted}",
    m.InstallSnapshotRpc: lambda r: (f"InstallSnapshotRpc term={r.term} meta={fmt(r.meta)} chunk={r.chunk_no} "
                                     f"last={r.last} data={fmt(r.data)}"),
    m.InstallSnapshotResult: lambda r: (f"InstallSnapshotResult term={r.term} chunk={r.chunk_no} "
                                        f"last={_pos(r.last_index, r.last_term)}"),
    m.Command: lambda r: (f"Command {_fmt_command(Usr(r.data, r.reply_mode, 0, r.session))} mode={fmt(r.reply_mode)}"
                          + ("" if r.priority == "normal" else f" priority={r.priority}")),
    m.Written: lambda r: f"Written term={r.term} {r.from_index}..{r.to_index}",
    fx.LogAppend: lambda r: f"LogAppend {_fmt_entries(r.entries)}",
    fx.WriteSnapshot: lambda r: f"WriteSnapshot meta={fmt(r.meta)} data={fmt(r.data)}",
    fx.RoleChanged: lambda r: f"RoleChanged {r.role}",
    fx.SetElectionTimer: lambda r: f"SetElectionTimer {r.kind}",
}


def fmt_message(msg: Any, sender: ServerId | None = None) -> str:
    """A message as a step header shows it: ``[SENDER] Name fields``."""
    text = _fmt_record(msg, sender) if dataclasses.is_dataclass(msg) else fmt(msg)
    return f"{fmt(sender)} {text}" if sender is not None else text


def fmt_effect(effect: Any, owner: ServerId) -> str:
    if isinstance(effect, fx.SendRpc):
        rpc = effect.rpc
        text = _fmt_record(rpc, owner) if dataclasses.is_dataclass(rpc) else fmt(rpc)
        return f"SendRpc {fmt(effect.to)} {text}"
    return _fmt_record(effect, owner)


# ================================================================== storage
@dataclass(frozen=True, slots=True)
class Pending:
    """A write waiting for ``persist``: ``kind`` is log, meta or snapshot."""

    kind: str
    effect: Any


@dataclass(frozen=True, slots=True)
class Landed:
    """One durable write as ``persist`` reports it: the notification to hand
    the server, or, for a write that has none, a line to print."""

    notification: Any = None
    note: str = ""


class MemDisk:
    """What one server has made durable, and what it has only asked for."""

    KEEP_SNAPSHOTS = 3  # older ones stay readable for transfers in progress

    def __init__(self) -> None:
        self.term = 0
        self.voted_for: ServerId | None = None
        self.last_applied = 0
        self.entries: dict[int, Entry] = {}
        self.snapshots: dict[tuple[int, int], tuple[SnapshotMeta, bytes]] = {}
        self.current: tuple[int, int] | None = None
        self.pending: list[Pending] = []

    @property
    def snapshot_index(self) -> int:
        return self.current[0] if self.current else 0

    def write_entry(self, entry: Entry) -> None:
        for j in [j for j in self.entries if j > entry.index]:
            del self.entries[j]
        self.entries[entry.index] = entry

    def truncate_below(self, index: int, keep_above: bool) -> None:
        if not keep_above:
            self.entries.clear()
        for j in [j for j in self.entries if j <= index]:
            del self.entries[j]

    def add_snapshot(self, meta: SnapshotMeta, data: bytes) -> bool:
        if self.current is not None and meta.index < self.current[0]:
            return False
        self.snapshots[(meta.index, meta.term)] = (meta, data)
        self.current = (meta.index, meta.term)
        while len(self.snapshots) > self.KEEP_SNAPSHOTS:
            del self.snapshots[next(iter(self.snapshots))]
        return True

    def read_chunk(self, meta: SnapshotMeta, chunk_no: int, size: int) -> tuple[bytes, bool] | None:
        found = self.snapshots.get((meta.index, meta.term))
        if found is None or chunk_no < 1 or size < 1:
            return None
        data = found[1]
        start = (chunk_no - 1) * size
        if start > len(data) or (start == len(data) and start > 0):
            return None
        return data[start:start + size], start + size >= len(data)

    def recovered(self) -> Recovered:
        """What a restart reads back: meta, the latest snapshot and the
        entries consecutive from just after it (past a gap is unreachable)."""
        snapshot = None
        if self.current is not None:
            meta, data = self.snapshots[self.current]
            snapshot = (meta, codec.unpack(data))
        entries = []
        i = self.snapshot_index + 1
        while i in self.entries:
            entries.append(codec.normalise(self.entries[i]))
            i += 1
        return Recovered(self.term, self.voted_for, self.last_applied, snapshot, tuple(entries))

    def land(self, writes: list[Pending]) -> list[Landed]:
        """Make ``writes`` durable, in order.  Consecutive WAL records are
        one batch, as in :mod:`ra_actors.testing.disk`: a ``Written`` per
        contiguous single-term run of the batch's entries still durable at
        its end."""
        out: list[Landed] = []
        batch: list[Entry] = []

        def close_batch() -> None:
            alive = sorted({e.index: e for e in batch if self.entries.get(e.index) is e}.values(),
                           key=lambda e: e.index)
            run: list[Entry] = []
            for e in alive:
                if run and (e.index != run[-1].index + 1 or e.term != run[-1].term):
                    out.append(Landed(m.Written(run[0].term, run[0].index, run[-1].index)))
                    run = []
                run.append(e)
            if run:
                out.append(Landed(m.Written(run[0].term, run[0].index, run[-1].index)))
            batch.clear()

        for w in writes:
            eff = w.effect
            if isinstance(eff, fx.LogAppend):
                for e in eff.entries:
                    self.write_entry(e)
                    batch.append(e)
                continue
            if isinstance(eff, fx.TruncateLogBelow):
                self.truncate_below(eff.index, eff.keep_above)
                out.append(Landed(note=_fmt_record(eff)))  # the WAL answers nothing for it
                continue
            close_batch()
            if isinstance(eff, fx.PersistMeta):
                self.term, self.voted_for = eff.term, eff.voted_for
                out.append(Landed(m.MetaWritten(eff.term, eff.voted_for)))
            elif isinstance(eff, fx.WriteSnapshot):
                data = eff.data if eff.data is not None else codec.pack(eff.state)
                if self.add_snapshot(eff.meta, data):
                    out.append(Landed(m.SnapshotWritten(eff.meta)))
                else:
                    out.append(Landed(note=f"snapshot {fmt(eff.meta)} discarded: a newer one is on disk"))
        close_batch()
        return out


_WRITE_KINDS = {fx.LogAppend: "log", fx.TruncateLogBelow: "log", fx.PersistMeta: "meta",
                fx.WriteSnapshot: "snapshot"}
KINDS = ("log", "meta", "snapshot")


def _fmt_pending(w: Pending) -> str:
    eff = w.effect
    if isinstance(eff, fx.LogAppend):
        return "log " + _fmt_entries(eff.entries)
    if isinstance(eff, fx.TruncateLogBelow):
        return f"log TruncateLogBelow {eff.index}" + ("" if eff.keep_above else " (drop above)")
    if isinstance(eff, fx.PersistMeta):
        return f"meta term={eff.term} voted_for={fmt(eff.voted_for)}"
    return f"snapshot {fmt(eff.meta)}"


# ================================================================= servers
@dataclass(frozen=True, slots=True)
class InFlight:
    """A message on its way from ``src`` to ``dst``."""

    seq: int
    src: ServerId
    dst: ServerId
    msg: Any

    def __str__(self) -> str:
        return f"{fmt(self.src)} -> {fmt(self.dst)} {_fmt_record(self.msg, self.src)}"


class Slot:
    """One server as the harness runs it: config, disk, and the live core
    (None while crashed or stopped)."""

    __slots__ = ("sid", "config", "srv", "disk", "down")

    def __init__(self, sid: ServerId, config: ServerConfig):
        self.sid = sid
        self.config = config
        self.srv: RaftServer | None = None
        self.disk = MemDisk()
        self.down = ""  # why it is not running ("" while it runs)


def _sid_key(sid: ServerId) -> tuple:
    return (sid.node, sid.name)


class Harness:
    """Runs the directives of one transcript against fresh servers."""

    def __init__(self) -> None:
        self.slots: dict[ServerId, Slot] = {}
        self.net: list[InFlight] = []
        self.seq = 0
        self.out: list[str] = []

    # ------------------------------------------------------------- entry
    def run(self, case: Case) -> str:
        self.out = []
        d = parse_directive(case.directive)
        if d.name not in self._DIRECTIVES:
            raise TranscriptError(f"unknown directive {d.name!r} (known: {', '.join(sorted(self._DIRECTIVES))})")
        handler, keywords = self._DIRECTIVES[d.name]
        unknown = set(d.kwargs) - keywords
        if unknown:
            raise TranscriptError(f"{d.name} takes no {', '.join(sorted(unknown))}= "
                                  f"(it takes: {', '.join(sorted(keywords)) or 'none'})")
        if case.input:
            raise TranscriptError(f"{d.name} takes no input lines")
        handler(self, d)
        return "\n".join(self.out)

    # ------------------------------------------------------------ helpers
    def sid(self, word: str) -> ServerId:
        if "@" in word:
            name, node = word.split("@", 1)
            return ServerId(name, node)
        return ServerId(CLUSTER, word)

    def slot(self, word: str) -> Slot:
        sid = self.sid(word)
        if sid not in self.slots:
            raise TranscriptError(f"no server {fmt(sid)}")
        return self.slots[sid]

    def _chosen(self, words: Iterable[str]) -> list[Slot]:
        words = list(words)
        slots = [self.slot(w) for w in words] if words else list(self.slots.values())
        return sorted(slots, key=lambda s: _sid_key(s.sid))

    def _step(self, slot: Slot, msg: Any, sender: ServerId | None = None) -> None:
        """Hand ``msg`` to the server, print the step and carry out the effects."""
        self.out.append(f"{fmt(slot.sid)} <- {fmt_message(msg, sender)}")
        role, effects = slot.srv.handle(msg)
        self._show(slot, role, effects)

    def _show(self, slot: Slot, role: str, effects: list) -> None:
        self.out.append(f"  role: {role}")
        notes: list[str] = []
        for eff in effects:
            self.out.append("  " + fmt_effect(eff, slot.sid))
            self._carry_out(slot, eff, notes)
        self.out.extend(notes)

    def _carry_out(self, slot: Slot, eff: Any, notes: list[str]) -> None:
        kind = _WRITE_KINDS.get(type(eff))
        if kind is not None:
            slot.disk.pending.append(Pending(kind, eff))
        elif isinstance(eff, fx.PersistLastApplied):
            slot.disk.last_applied = eff.index
        elif isinstance(eff, fx.SendRpc):
            self._send(slot.sid, ServerId(*eff.to), eff.rpc)
        elif isinstance(eff, fx.ForwardCommand):
            self._send(slot.sid, ServerId(*eff.leader), eff.command)
        elif isinstance(eff, fx.SendSnapshotChunk):
            chunk = slot.disk.read_chunk(eff.meta, eff.chunk_no, eff.chunk_size)
            if chunk is None:
                notes.append(f"  ! chunk {eff.chunk_no} of snapshot {fmt(eff.meta)} is not durable here: not sent")
                return
            data, last = chunk
            self._send(slot.sid, ServerId(*eff.to),
                       m.InstallSnapshotRpc(eff.term, slot.sid, eff.meta, eff.chunk_no, last, data))
        elif isinstance(eff, fx.StopServer):
            notes.extend(self._halt(slot, f"stopped ({eff.reason})", ()))
        elif isinstance(eff, fx.DeleteData):
            notes.extend(self._halt(slot, "deleted", ()))
            slot.disk = MemDisk()

    def _send(self, src: ServerId, dst: ServerId, msg: Any) -> None:
        self.seq += 1
        self.net.append(InFlight(self.seq, src, dst, msg))

    def _matching(self, d: Directive, among: set | None = None) -> list[InFlight]:
        srcs = {self.sid(w) for w in _as_list(d.kwargs.get("from", ()))}
        dsts = {self.sid(w) for w in _as_list(d.kwargs.get("to", ()))}
        types = set(_as_list(d.kwargs.get("type", ())))
        count = int(d.kwargs.get("count", len(self.net)))
        out = []
        for f in self.net:
            if srcs and f.src not in srcs or dsts and f.dst not in dsts:
                continue
            if types and type(f.msg).__name__ not in types:
                continue
            if among is not None and not (f.src in among and f.dst in among):
                continue
            out.append(f)
        return out[:count]

    def _deliver(self, flights: list[InFlight]) -> None:
        taken = {f.seq for f in flights}
        self.net = [f for f in self.net if f.seq not in taken]
        for f in flights:
            slot = self.slots.get(f.dst)
            if slot is None or slot.srv is None:
                why = "unknown" if slot is None else slot.down
                self.out.append(f"{fmt(f.dst)} <- {fmt_message(f.msg, f.src)}  (dropped: {why})")
                continue
            self._step(slot, f.msg, f.src)

    def _persist(self, slot: Slot, kinds: tuple[str, ...]) -> bool:
        if slot.srv is None:
            return False
        writes = [w for w in slot.disk.pending if w.kind in kinds]
        if not writes:
            return False
        slot.disk.pending = [w for w in slot.disk.pending if w.kind not in kinds]
        for landed in slot.disk.land(writes):
            if landed.notification is None:
                self.out.append(f"{fmt(slot.sid)} durable: {landed.note}")
            elif slot.srv is not None:
                self._step(slot, landed.notification)
        return True

    def _start(self, slot: Slot, recovered: Recovered | None) -> None:
        slot.srv = RaftServer(slot.config, Machine(TranscriptKv()), recovered)
        slot.down = ""
        role, effects = slot.srv.init()
        self._show(slot, role, effects)

    # --------------------------------------------------------- directives
    def _add_servers(self, d: Directive) -> None:
        if not d.args:
            raise TranscriptError("add-servers needs at least one server")
        names = [self.sid(w) for w in d.args]
        members = tuple(self.sid(w) for w in _as_list(d.kwargs.get("members", ()))) or tuple(names)
        tunables = {}
        for key, attr in (("chunk", "snapshot_chunk_size"), ("batch", "max_append_entries_batch"),
                          ("pipeline", "max_pipeline_count")):
            if key in d.kwargs:
                tunables[attr] = int(d.kwargs[key])
        joining = _flag(d.kwargs.get("joining", "false"))
        for sid in names:
            if sid in self.slots:
                raise TranscriptError(f"server {fmt(sid)} exists already")
            cfg = ServerConfig(server_id=sid, uid=f"{sid.name}_{sid.node}", cluster_name=sid.name,
                               machine="transcript", initial_members=members, joining=joining, **tunables)
            slot = self.slots[sid] = Slot(sid, cfg)
            self.out.append(f"{fmt(sid)} init members={fmt(members)}" + (" joining" if joining else ""))
            self._start(slot, None)

    def _tell(self, d: Directive) -> None:
        if len(d.args) < 2:
            raise TranscriptError("tell needs a server and a message")
        slot = self.slot(d.args[0])
        if slot.srv is None:
            raise TranscriptError(f"{fmt(slot.sid)} is {slot.down}: nothing to tell")
        self._step(slot, self._local_message(d.args[1], d.args[2:], d.kwargs))

    def _local_message(self, name: str, args: tuple[str, ...], kw: dict) -> Any:
        caller = kw.get("from", "client")

        def arg(i: int, default: str | None = None) -> str:
            if i < len(args):
                return args[i]
            if default is None:
                raise TranscriptError(f"{name} needs argument {i + 1}")
            return default

        if name == "Command":
            if not args:
                raise TranscriptError("Command needs its words")
            mode = kw.get("mode", "sync")
            modes = {"sync": lambda: AwaitConsensus(caller), "notify": lambda: NotifyReply(kw.get("corr", "1"), caller),
                     "noreply": NoReply, "after_append": lambda: AfterLogAppend(caller)}
            if mode not in modes:
                raise TranscriptError(f"unknown reply mode {mode!r}")
            return m.Command(tuple(args), modes[mode](), kw.get("priority", "normal"), int(kw.get("ts", "0")),
                             _session(kw["session"]) if "session" in kw else None)
        simple = {"TriggerElection": m.TriggerElection, "ElectionTimeout": m.ElectionTimeout,
                  "AwaitConditionTimeout": m.AwaitConditionTimeout, "StepDownIfLeader": m.StepDownIfLeader}
        if name in simple:
            return simple[name]()
        builders: dict[str, Callable[[], Any]] = {
            "Tick": lambda: m.Tick(int(arg(0))),
            "ServerDown": lambda: m.ServerDown(self.sid(arg(0)), arg(1, "noproc")),
            "NodeEvent": lambda: m.NodeEvent(arg(0), {"up": True, "down": False}[arg(1)]),
            "AddMember": lambda: m.AddMember(self.sid(arg(0)), arg(1, VOTER), caller),
            "RemoveMember": lambda: m.RemoveMember(self.sid(arg(0)), caller),
            "TransferLeadership": lambda: m.TransferLeadership(self.sid(arg(0)), caller),
            "DeleteClusterCmd": lambda: m.DeleteClusterCmd(caller),
            "Members": lambda: m.Members(caller),
            "Query": lambda: m.Query(arg(0), functools.partial(_read, key=arg(1)), caller),
        }
        if name not in builders:
            raise TranscriptError(f"unknown message {name!r} (known: Command, "
                                  f"{', '.join(sorted([*simple, *builders]))})")
        try:
            return builders[name]()
        except KeyError as exc:
            raise TranscriptError(f"bad argument for {name}: {exc}") from None

    def _deliver_directive(self, d: Directive) -> None:
        self._deliver(self._matching(d))

    def _drop(self, d: Directive) -> None:
        lost = self._matching(d)
        taken = {f.seq for f in lost}
        self.net = [f for f in self.net if f.seq not in taken]
        for f in lost:
            self.out.append(f"dropped {f}")

    def _persist_directive(self, d: Directive) -> None:
        kinds = _as_list(d.kwargs.get("only", KINDS))
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise TranscriptError(f"unknown write kinds {sorted(unknown)}")
        for slot in self._chosen(d.args):
            self._persist(slot, kinds)

    def _stabilize(self, d: Directive) -> None:
        among = {s.sid for s in self._chosen(d.args)}
        for _round in range(1000):
            progressed = False
            for slot in self._chosen(d.args):
                progressed |= self._persist(slot, KINDS)
            flights = self._matching(Directive("deliver", ()), among)
            if flights:
                self._deliver(flights)
                progressed = True
            if not progressed:
                return
        raise TranscriptError("stabilize did not settle in 1000 rounds")

    def _crash(self, d: Directive) -> None:
        durable = _as_list(d.kwargs.get("durable", ()))
        if set(durable) - set(KINDS):
            raise TranscriptError(f"unknown write kinds {sorted(set(durable) - set(KINDS))}")
        for slot in self._chosen(d.args):
            if slot.srv is None:
                raise TranscriptError(f"{fmt(slot.sid)} is already {slot.down}")
            self.out.extend(self._halt(slot, "crashed", durable))

    def _halt(self, slot: Slot, why: str, durable: tuple[str, ...]) -> list[str]:
        """The server's process is gone: its pending writes of the kinds in
        ``durable`` land without notification ("after fsync, before the
        reply"), the others are lost, and the messages in flight to it were
        addressed to a process that no longer exists."""
        lines = [f"{fmt(slot.sid)} {why}"]
        landed = [w for w in slot.disk.pending if w.kind in durable]
        lost = [w for w in slot.disk.pending if w.kind not in durable]
        slot.disk.pending = []
        slot.disk.land(landed)
        slot.srv, slot.down = None, why
        lines += [f"  durable without notification: {_fmt_pending(w)}" for w in landed]
        lines += [f"  lost: {_fmt_pending(w)}" for w in lost]
        return lines + self._drop_addressed_to(slot.sid)

    def _drop_addressed_to(self, sid: ServerId) -> list[str]:
        dropped = [f for f in self.net if f.dst == sid]
        self.net = [f for f in self.net if f.dst != sid]
        return [f"  dropped in flight: {f}" for f in dropped]

    def _restart(self, d: Directive) -> None:
        for slot in self._chosen(d.args):
            if slot.srv is not None:
                raise TranscriptError(f"{fmt(slot.sid)} is running")
            rec = slot.disk.recovered()
            snap = f"{fmt(rec.snapshot[0])}" if rec.snapshot else "-"
            self.out.append(f"{fmt(slot.sid)} restart term={rec.current_term} voted_for={fmt(rec.voted_for)} "
                            f"last_applied={rec.last_applied} snapshot={snap} log={_fmt_entries(rec.entries)}")
            # Messages sent while it was down were addressed to the old process.
            self.out.extend(self._drop_addressed_to(slot.sid))
            self._start(slot, rec)

    def _state(self, d: Directive) -> None:
        for slot in self._chosen(d.args):
            srv, disk = slot.srv, slot.disk
            if srv is None:
                self.out.append(f"{fmt(slot.sid)} {slot.down}")
            else:
                self.out.append(f"{fmt(slot.sid)} {srv.role} term={srv.current_term} voted_for={fmt(srv.voted_for)} "
                                f"leader={fmt(srv.leader_id)} commit={srv.commit_index} "
                                f"applied={srv.last_applied}")
                self.out.append(f"  log: snapshot={srv.log.snapshot_index}/{srv.log.snapshot_term} "
                                f"{_fmt_entries(srv.log.entries)} written={srv.log.last_written}")
                members = sorted(srv.cluster.items(), key=lambda p: _sid_key(p[0]))
                self.out.append("  cluster: " + _fmt_cluster(tuple(members)))
                self.out.append(f"  machine: {fmt(srv.machine_state)}")
            snap = fmt(disk.snapshots[disk.current][0]) if disk.current else "-"
            durable = _fmt_entries(disk.entries[i] for i in sorted(disk.entries))
            self.out.append(f"  disk: term={disk.term} voted_for={fmt(disk.voted_for)} "
                            f"last_applied={disk.last_applied} snapshot={snap} log={durable}")
            for w in disk.pending:
                self.out.append(f"  pending: {_fmt_pending(w)}")

    def _net(self, d: Directive) -> None:
        for f in self._matching(d):
            self.out.append(str(f))

    _FILTERS = frozenset({"from", "to", "type", "count"})
    # directive -> (method, the keyword arguments it takes)
    _DIRECTIVES = {
        "add-servers": (_add_servers, frozenset({"members", "joining", "chunk", "batch", "pipeline"})),
        "tell": (_tell, frozenset({"from", "mode", "corr", "priority", "session", "ts"})),
        "deliver": (_deliver_directive, _FILTERS),
        "drop": (_drop, _FILTERS),
        "persist": (_persist_directive, frozenset({"only"})),
        "stabilize": (_stabilize, frozenset()),
        "crash": (_crash, frozenset({"durable"})),
        "restart": (_restart, frozenset()),
        "state": (_state, frozenset()),
        "net": (_net, _FILTERS),
    }


# ================================================================ running
@dataclass(frozen=True, slots=True)
class Outcome:
    case: Case
    actual: str

    @property
    def ok(self) -> bool:
        return self.actual == self.case.expected


def run_transcript(transcript: Transcript) -> list[Outcome]:
    """Replay every case of ``transcript`` in order against one harness."""
    harness = Harness()
    outcomes = []
    for part in transcript.parts:
        if isinstance(part, Case):
            try:
                actual = harness.run(part)
            except TranscriptError as exc:
                raise TranscriptError(f"{transcript.path}:{part.line}: {part.directive}: {exc}") from None
            except Exception as exc:  # the core (or a bad number) raised: say where
                raise TranscriptError(f"{transcript.path}:{part.line}: {part.directive}: "
                                      f"{type(exc).__name__}: {exc}") from exc
            outcomes.append(Outcome(part, actual))
    return outcomes


def run_file(path: str | Path, rewrite: bool = False) -> list[Outcome]:
    """Replay a transcript file; with ``rewrite`` store the actual outputs
    in it as the new expectations."""
    path = Path(path)
    transcript = parse(path.read_text(), str(path))
    outcomes = run_transcript(transcript)
    if rewrite:
        text = render_file(transcript, {o.case.line: o.actual for o in outcomes})
        if text != path.read_text():
            path.write_text(text)
    return outcomes
