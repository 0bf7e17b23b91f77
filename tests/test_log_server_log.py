"""ServerLog: the per-server facade over WAL, mem table, segments, snapshots and meta."""
from __future__ import annotations

import pytest

from ra_actors.core.messages import ResendWrite, SnapshotWritten, Written
from ra_actors.core.types import Entry, ServerConfig, ServerId, SnapshotMeta
from ra_actors.errors import LogCorruption
from ra_actors.log.common import LogUsageError, list_numbered, segments_dir
from ra_actors.log.recovery import recover_node
from ra_actors.log.server_log import ServerLog

A, B = ServerId("a", "n1"), ServerId("b", "n2")
CLUSTER = ((A, "voter"), (B, "voter"))


def cfg(uid="s1"):
    return ServerConfig(A, uid, "c", "machines.kv", (A, B))


def es(first, last, term=1, tag="v"):
    return [Entry(i, term, (tag, i)) for i in range(first, last + 1)]


def write(node, slog, entries):
    """What the shell does for LogAppend: mem table + WAL, then deliver results."""
    req = slog.append(entries)
    node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads, truncate=req.truncate, overwrite=req.overwrite)
    _res, msgs = node.flush()
    return msgs.get(slog.uid, [])


def roll(node):
    path = node.wal.roll_over()
    if path is not None:
        node.flush_segments(path)


def test_append_written_read_across_mem_table_and_segments(tmp_path):
    with recover_node(tmp_path, segment_max_count=4) as node:
        slog = node.create_server(cfg())
        assert (slog.first_index, slog.last_index, slog.last_term) == (1, 0, 0)
        assert write(node, slog, es(1, 6)) == [Written(1, 1, 6)]
        roll(node)
        assert write(node, slog, es(7, 9, term=2)) == [Written(2, 7, 9)]
        ov = slog.overview()
        assert ov["mem_table_entries"] == 3 and ov["segments"] == 2
        assert slog.read(1, 100) == es(1, 6) + es(7, 9, term=2)
        assert slog.read(5, 8) == es(5, 6) + es(7, 8, term=2)
        assert (slog.last_index, slog.last_term, slog.last_written) == (9, 2, (9, 2))
        assert slog.fetch_term(6) == 1 and slog.fetch_term(10) is None
        with pytest.raises(LogUsageError):
            slog.append(es(11, 11))  # gap
        with pytest.raises(LogUsageError):
            slog.append([Entry(10, 1, "x")])  # term below the previous entry's


def test_pending_entries_are_readable_before_written(tmp_path):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        req = slog.append(es(1, 3))
        assert slog.read(1, 3) == es(1, 3) and slog.last_written == (0, 0)
        assert req.records == tuple((i, 1, p) for i, p in zip((1, 2, 3), req.payloads))
        assert req.truncate  # the first append after the (empty) snapshot restarts the log


def test_overwrite_in_mem_table_and_in_segments_survives_restart(tmp_path):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        write(node, slog, es(1, 10, term=1, tag="old"))
        roll(node)
        write(node, slog, es(11, 12, term=1, tag="old"))
        # Leader change: rewrite from 8 (inside the segments' range).
        assert write(node, slog, es(8, 9, term=2, tag="new")) == [Written(2, 8, 9)]
        assert slog.last_index == 9
        assert [e.command[0] for e in slog.read(1, 20)] == ["old"] * 7 + ["new"] * 2
        roll(node)
        assert slog.read(1, 20) == es(1, 7, tag="old") + es(8, 9, term=2, tag="new")
    with recover_node(tmp_path) as node:
        slog = node.open_server("s1")
        rec = slog.recovered()
        assert rec.entries == tuple(es(1, 7, tag="old") + es(8, 9, term=2, tag="new"))


def test_the_first_append_after_a_restart_says_it_overwrites_wherever_it_starts(tmp_path):
    """The WAL takes a writer's first append of its life above index 1 only
    as an overwrite: a restarted log's first append is flagged so, even when
    it follows on; the next ones are plain again."""
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        write(node, slog, es(1, 5))
    with recover_node(tmp_path) as node:
        slog = node.open_server("s1")
        slog.recovered()
        first = slog.append(es(6, 6))
        assert first.overwrite and not first.truncate
        node.wal.append_run(first.uid, first.first_index, first.terms, first.payloads, overwrite=first.overwrite)
        assert node.flush()[1].get("s1") == [Written(1, 6, 6)]
        assert not slog.append(es(7, 7)).overwrite


def test_every_append_tells_the_wal_the_term_before_it_and_the_durable_prefix(tmp_path):
    """The WAL takes a write only where it continues what it holds of this
    log (ra_actors.log.wal_sequence): each append says the term of the
    entry before it and how far the log is durable, lowered first when the
    append replaces entries at or below that."""
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        a = slog.append(es(1, 5))
        assert (a.prev_term, a.durable) == (0, 0)
        slog.handle_written(1, 1, 5)
        b = slog.append(es(6, 6, term=2))
        assert (b.prev_term, b.durable) == (1, 5)
        c = slog.append(es(5, 5, term=3))              # a new leader replaces 5 and 6
        assert (c.prev_term, c.durable, c.overwrite) == (1, 4, True)
        enc = c.encode()
        assert (enc.prev_term, enc.durable) == (1, 4)
        r = slog.resend_from(5)
        assert (r.prev_term, r.durable, r.overwrite) == (1, 4, True)


def test_written_report_is_clipped_after_overwrite(tmp_path):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        slog.append(es(1, 5))
        slog.append(es(4, 4, term=2))  # overwrite before the first report arrives
        assert slog.handle_written(1, 1, 5) == [Written(1, 1, 3)]
        assert slog.last_written == (3, 1)
        assert slog.handle_written(2, 4, 4) == [Written(2, 4, 4)]
        assert slog.handle_written(1, 4, 5) == []


def test_a_report_that_overtook_an_earlier_one_waits_for_it(tmp_path):
    """WAL results can arrive out of order: the report of 4..6 proves
    nothing while 1..3 is unreported (durability is a prefix); when 1..3
    arrives, both count, in order."""
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        slog.append(es(1, 3))
        slog.append(es(4, 6))
        assert slog.handle_written(1, 4, 6) == []
        assert slog.last_written == (0, 0)
        assert slog.handle_written(1, 1, 3) == [Written(1, 1, 3), Written(1, 4, 6)]
        assert slog.last_written == (6, 1)


def test_a_waiting_report_for_replaced_entries_counts_only_what_still_matches(tmp_path):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        slog.append(es(1, 6))
        assert slog.handle_written(1, 4, 6) == []
        slog.append(es(5, 5, term=2))            # overwrite 5.. while 4..6 waits
        assert slog.handle_written(1, 1, 3) == [Written(1, 1, 3), Written(1, 4, 4)]
        assert slog.last_written == (4, 1)


def test_resend_after_gap_reported_by_wal(tmp_path):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        write(node, slog, es(1, 2))
        slog.append(es(3, 3))  # lost on its way to the WAL
        req = slog.append(es(4, 4))
        node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads)
        _res, msgs = node.flush()
        assert msgs["s1"] == [ResendWrite(3)]
        again = slog.resend_from(3)
        assert again.first_index == 3 and len(again.payloads) == 2
        node.wal.append_run(again.uid, again.first_index, again.terms, again.payloads)
        _res, msgs = node.flush()
        assert msgs["s1"] == [Written(1, 3, 4)]


def test_server_restart_with_live_wal_reads_unflushed_entries(tmp_path):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        write(node, slog, es(1, 5))
        slog.close()
        # The server actor restarts; the node (and its WAL) keep running.
        again = ServerLog.open(tmp_path, "s1")
        assert again.recovered().entries == tuple(es(1, 5))
        assert again.last_written == (5, 1)


def test_snapshot_install_keeps_matching_log_else_restarts_it(tmp_path):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        write(node, slog, es(1, 10, term=1))
        leader = node.create_server(cfg("leader"))
        write(node, leader, es(1, 6, term=1))
        image_ok = leader.snapshots.write(SnapshotMeta(6, 1, CLUSTER), {"at": 6}).read_bytes()
        assert slog.write_snapshot_image(SnapshotMeta(6, 1, CLUSTER), image_ok) == \
            SnapshotWritten(SnapshotMeta(6, 1, CLUSTER))
        assert (slog.first_index, slog.last_index) == (7, 10)  # matching: log kept
        # A snapshot from a newer term at 8 conflicts with our entry 8 (term 1).
        m8 = SnapshotMeta(8, 3, CLUSTER)
        image = leader.snapshots.write(m8, {"at": 8}).read_bytes()
        chunks = [image[i:i + 100] for i in range(0, len(image), 100)]
        for n, chunk in enumerate(chunks, 1):
            out = slog.accept_snapshot_chunk(m8, n, chunk, n == len(chunks))
        assert out == SnapshotWritten(m8)
        assert (slog.first_index, slog.last_index, slog.last_term) == (9, 8, 3)
        assert slog.read(9, 20) == []
        req = slog.append(es(9, 9, term=3))
        assert req.truncate
        node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads, truncate=True)
        node.flush()
        roll(node)
        assert slog.read(9, 20) == es(9, 9, term=3)
    with recover_node(tmp_path) as node:
        rec = node.open_server("s1").recovered()
        assert rec.snapshot == (m8, {"at": 8}) and rec.entries == tuple(es(9, 9, term=3))


def test_recovery_drops_stale_entries_after_installed_snapshot(tmp_path):
    """Crash after installing a conflicting snapshot, before any new append."""
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        write(node, slog, es(1, 10, term=1))
        roll(node)
        image = slog.snapshots.write(SnapshotMeta(5, 4, CLUSTER), {"s": 5}).read_bytes()
        slog.write_snapshot_image(SnapshotMeta(5, 4, CLUSTER), image)
        assert slog.last_index == 5
    with recover_node(tmp_path) as node:
        slog = node.open_server("s1")
        assert slog.last_index == 5 and slog.recovered().entries == ()
        assert slog.append(es(6, 6, term=4)).truncate


def test_hole_between_snapshot_and_log_is_corruption(tmp_path):
    with recover_node(tmp_path, segment_max_count=3) as node:
        slog = node.create_server(cfg())
        write(node, slog, es(1, 9))
        roll(node)
    seg_files = list_numbered(segments_dir(tmp_path, "s1"), ".segment")
    seg_files[1][1].unlink()  # entries 4..6 gone
    with pytest.raises(LogCorruption) as err:
        ServerLog.open(tmp_path, "s1")
    assert "4..6" in str(err.value)


def test_last_applied_is_capped_at_last_written(tmp_path):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        write(node, slog, es(1, 3))
        slog.append(es(4, 6))  # not yet durable
        slog.persist_last_applied(6)
        assert slog.last_applied == 3
    with recover_node(tmp_path) as node:
        assert node.open_server("s1").recovered().last_applied == 3


def test_node_recovery_lists_configs_and_flushes_old_wal(tmp_path):
    with recover_node(tmp_path) as node:
        s1 = node.create_server(cfg("s1"))
        s2 = node.create_server(cfg("s2"))
        write(node, s1, es(1, 2))
        write(node, s2, es(1, 1))
    with recover_node(tmp_path) as node:
        assert [c.uid for c in node.configs()] == ["s1", "s2"]
        assert len(node.recovered_flushes) == 1
        assert [p.name for _, p in list_numbered(tmp_path / "wal", ".wal")] == [node.wal.path.name]
        assert node.open_server("s2").read(1, 1) == es(1, 1)
        node.delete_server("s1")
        assert [c.uid for c in node.configs()] == ["s2"]


def test_server_side_encoding_is_what_the_wal_writes(tmp_path):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        req = slog.append(es(1, 4, term=2))
        node.wal.append_encoded(req.encode())
        _res, msgs = node.flush()
        assert msgs["s1"] == [Written(2, 1, 4)]
        slog.close()
        assert ServerLog.open(tmp_path, "s1").read(1, 4) == es(1, 4, term=2)


def _cp_image(meta, state):
    from ra_actors.codec import pack
    from ra_actors.log.snapshot import encode_snapshot
    return encode_snapshot(meta, pack(state))


def test_checkpoints_are_kept_beside_the_log_recovered_promoted_and_deleted(tmp_path):
    m3, m6, m8 = SnapshotMeta(3, 1, CLUSTER), SnapshotMeta(6, 1, CLUSTER), SnapshotMeta(8, 1, CLUSTER)
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        write(node, slog, es(1, 10))
        for meta in (m3, m6, m8):
            slog.write_checkpoint_image(meta, _cp_image(meta, {"at": meta.index}))
        assert (slog.first_index, slog.snapshot_index) == (1, 0)   # nothing truncated
        assert slog.overview()["checkpoints"] == [3, 6, 8]
    with recover_node(tmp_path) as node:
        slog = node.open_server("s1")
        rec = slog.recovered()
        assert rec.snapshot is None and rec.checkpoints == (m3, m6, m8)
        assert rec.checkpoint == (m8, {"at": 8}) and len(rec.entries) == 10
        assert slog.promote_checkpoint(m6) == SnapshotWritten(m6)     # a rename, not a write
        assert slog.snapshots.latest() == (m6, {"at": 6}) and slog.snapshot_index == 6
        assert slog.overview()["checkpoints"] == [3, 8]
    with recover_node(tmp_path) as node:
        # checkpoints at or below the snapshot are garbage (a crash before their deletion)
        slog = node.open_server("s1")
        assert slog.overview()["checkpoints"] == [8]
        assert slog.recovered().checkpoints == (m8,)
        slog.delete_checkpoints((m8,))
        assert slog.recovered().checkpoint is None


def test_a_damaged_checkpoint_stops_recovery_naming_it(tmp_path):
    from ra_actors.log.common import checkpoints_dir
    m4 = SnapshotMeta(4, 1, CLUSTER)
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        write(node, slog, es(1, 6))
        slog.write_checkpoint_image(m4, _cp_image(m4, {"at": 4}))
    path = next(checkpoints_dir(tmp_path, "s1").iterdir())
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with recover_node(tmp_path) as node:
        with pytest.raises(LogCorruption) as err:
            node.open_server("s1").recovered()
        assert path.name in str(err.value)


def test_session_commands_written_by_earlier_versions_read_back_beside_compact_ones(tmp_path, monkeypatch):
    """A log whose older entries hold session commands as tagged records
    (what every version before the compact forms wrote) and whose newer
    ones are compact: both read back as the same records, from the WAL,
    from segments and after a restart."""
    from ra_actors.core.types import AwaitConsensus, NotifyReply, SessionSeq, Usr
    from ra_actors.log import server_log
    from test_codec import tagged_as_before

    def sessions(first, last, term=1):
        return [Entry(i, term, Usr(("add", i), NotifyReply(i, "client:n1:c") if i % 3 else AwaitConsensus("c"),
                                   1700000000000 + i, SessionSeq("cli/s@n1", i, max(1, i - 2), i > 1)))
                for i in range(first, last + 1)]
    with recover_node(tmp_path, segment_max_count=4) as node:
        slog = node.create_server(cfg())
        monkeypatch.setattr(server_log, "pack", tagged_as_before)
        write(node, slog, sessions(1, 6))
        roll(node)
        write(node, slog, sessions(7, 9))
        monkeypatch.undo()
        write(node, slog, sessions(10, 14))
        assert slog.read(1, 20) == sessions(1, 14)
    on_disk = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"SessionSeq" in on_disk and b"\xd5\x04~U" in on_disk     # both forms really are there
    with recover_node(tmp_path, segment_max_count=4) as node:
        slog = node.open_server("s1")
        assert slog.recovered().entries == tuple(sessions(1, 14))
        roll(node)
        assert slog.read(1, 20) == sessions(1, 14)
