"""RaftLog (ra_actors/core/log.py): the in-memory view of a server's log."""
from __future__ import annotations

import pytest

from core_helpers import log_of, noop, usr
from ra_actors.core.log import RaftLog


def _log(*terms, snapshot=(0, 0), last_written=None):
    idx, term = snapshot
    return RaftLog(idx, term, log_of(*terms, start=idx + 1), last_written)


def test_empty_log_has_index_and_term_zero():
    """Raft §5.3: an empty log ends at index 0, term 0 (prevLogIndex 0 always
    matches)."""
    log = RaftLog()
    assert (log.last_index, log.last_term, log.first_index, log.last_written) == (0, 0, 1, 0)
    assert log.term_at(0) == 0 and log.term_at(1) is None and log.get(1) is None


def test_term_at_knows_entries_and_the_snapshot_point_only():
    """Raft §7: after a snapshot the log still knows the last included
    index and term, but nothing before."""
    log = _log(3, 3, 4, snapshot=(5, 2))
    assert (log.first_index, log.last_index, log.last_term) == (6, 8, 4)
    assert [log.term_at(i) for i in (4, 5, 6, 7, 8, 9)] == [None, 2, 3, 3, 4, None]
    assert log.get(5) is None and log.get(6).index == 6 and log.get(9) is None


def test_slice_is_inclusive_and_clipped_to_what_the_log_holds():
    log = _log(1, 1, 1, 1, snapshot=(2, 1))      # entries 3..6
    assert [e.index for e in log.slice(4, 5)] == [4, 5]
    assert [e.index for e in log.slice(1, 4)] == [3, 4]
    assert [e.index for e in log.slice(5, 99)] == [5, 6]
    assert log.slice(7, 9) == [] and log.slice(5, 4) == []


def test_append_must_be_consecutive():
    """Raft §5.3: the log has no holes."""
    log = RaftLog(0, 0, log_of(1, 1))
    with pytest.raises(ValueError):
        log.append(usr(4, 1))
    log.append(usr(3, 1))
    assert log.last_index == 3
    with pytest.raises(ValueError):
        RaftLog(0, 0, (noop(1, 1), usr(3, 1)))


def test_truncate_after_drops_the_suffix_and_lowers_last_written():
    """Raft §5.3: truncated entries are no longer ours, durable or not."""
    log = _log(1, 1, 1, 1, 1)
    assert log.last_written == 5
    log.truncate_after(2)
    assert (log.last_index, log.last_written) == (2, 2)
    log.append(usr(3, 2))
    assert log.last_written == 2                 # the new entry is not durable yet


def test_truncate_after_never_goes_below_the_snapshot():
    """Raft §7: snapshotted entries are committed and cannot be removed."""
    log = _log(1, 1, snapshot=(4, 1))
    log.truncate_after(1)
    assert (log.snapshot_index, log.last_index, log.last_written, log.entries) == (4, 4, 4, [])


def test_written_advances_last_written():
    log = _log(1, 1, 1, 1, last_written=1)
    assert log.written(1, 2, 3) is True and log.last_written == 3
    assert log.written(1, 2, 3) is False and log.last_written == 3   # nothing new
    assert log.written(1, 4, 9) is True and log.last_written == 4    # clipped to the log


def test_written_above_a_hole_does_not_count():
    """Durability is a prefix: a Written for 4..5 while 2..3 were never
    reported (a lost WAL write) proves nothing, since recovery stops at the
    first gap; once the hole is reported the later report counts again."""
    log = _log(1, 1, 1, 1, 1, last_written=1)
    assert log.written(1, 4, 5) is False and log.last_written == 1
    assert log.written(1, 2, 3) is True and log.last_written == 3
    assert log.written(1, 4, 5) is True and log.last_written == 5


def test_written_ignores_entries_replaced_with_another_term():
    """Raft §5.3 (Log Matching: same index and term = same entry): a late
    Written for entries that were since replaced (other term) does not make
    the replacements durable; only the still-matching prefix counts."""
    log = _log(1, 1, 1, 1, last_written=1)
    log.truncate_after(2)
    log.append(usr(3, 2))
    log.append(usr(4, 2))
    assert log.last_written == 1
    assert log.written(1, 3, 4) is False and log.last_written == 1   # both replaced
    assert log.written(1, 2, 4) is True and log.last_written == 2    # entry 2 is still the term-1 one
    assert log.written(2, 3, 4) is True and log.last_written == 4


def test_install_snapshot_keeps_the_suffix_when_the_log_holds_the_point():
    """Raft §7: if an existing entry has the snapshot's last index and term,
    the entries following it are retained."""
    log = _log(1, 1, 2, 2, 2, last_written=3)
    log.install_snapshot(3, 2)
    assert (log.snapshot_index, log.snapshot_term, [e.index for e in log.entries]) == (3, 2, [4, 5])
    assert log.last_written == 3 and log.first_index == 4


def test_install_snapshot_drops_everything_when_term_differs_or_index_is_beyond():
    """Raft §7: otherwise the entire log is discarded."""
    log = _log(1, 1, 1, 1)
    log.install_snapshot(3, 2)
    assert (log.snapshot_index, log.last_index, log.last_term, log.entries, log.last_written) == (3, 3, 2, [], 3)
    short = _log(1, 1)
    short.install_snapshot(9, 3)
    assert (short.snapshot_index, short.last_index, short.entries, short.last_written) == (9, 9, [], 9)


@pytest.mark.parametrize("last_index,last_term,expected", [
    (5, 2, True),    # same last entry
    (9, 2, True),    # same term, longer
    (4, 2, False),   # same term, shorter
    (1, 3, True),    # later term wins whatever the length
    (99, 1, False),  # earlier term loses whatever the length
])
def test_is_up_to_date_compares_last_term_then_length(last_index, last_term, expected):
    """Raft §5.4.1: the later last term is more up to date; with the same last
    term, the longer log is."""
    log = _log(1, 1, 2, 2, 2)
    assert log.is_up_to_date(last_index, last_term) is expected


def test_is_up_to_date_after_snapshot_uses_the_snapshot_term():
    """Raft §5.4.1 + §7: an empty log after a snapshot ends at the snapshot."""
    log = RaftLog(5, 2)
    assert log.is_up_to_date(5, 2) is True and log.is_up_to_date(4, 2) is False
