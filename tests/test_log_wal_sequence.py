"""The WAL's sequencing rule on its own: which write of a writer is taken."""
from __future__ import annotations

from ra_actors.log.wal_sequence import MAX_RUNS, TAKEN, Decision, WalSequencer


def write(seq: WalSequencer, first: int, terms: list[int], *, prev_term: int | None, durable: int = 0,
          life: int = 1, uid: str = "s1", truncate: bool = False, overwrite: bool = False) -> Decision:
    runs: list = []
    for k, term in enumerate(terms):
        i = first + k
        if runs and runs[-1][0] == term:
            runs[-1] = (term, runs[-1][1], i)
        else:
            runs.append((term, i, i))
    return seq.admit(uid, life, first, tuple(runs), prev_term=prev_term, durable=durable,
                     truncate=truncate, overwrite=overwrite)


def test_writes_that_continue_the_log_are_taken_like_appendentries():
    seq = WalSequencer()
    assert write(seq, 1, [1, 1, 1], prev_term=0) == TAKEN
    assert write(seq, 4, [2, 2], prev_term=1) == TAKEN           # pipelined: nothing durable yet
    assert write(seq, 5, [3], prev_term=2, overwrite=True) == TAKEN   # a new leader replaces 5
    assert seq.last_index("s1") == 5
    assert write(seq, 6, [3], prev_term=3) == TAKEN


def test_a_term_that_differs_before_the_write_asks_once_for_a_resend_from_the_durable_prefix():
    seq = WalSequencer()
    write(seq, 1, [1] * 10, prev_term=0)
    # the writer replaced 10 with a term-2 entry, and that write was lost
    assert write(seq, 11, [2], prev_term=2, durable=9) == Decision(False, 10)
    assert write(seq, 12, [2], prev_term=2, durable=9) == Decision(False, None)   # asked already
    assert write(seq, 10, [2, 2, 2], prev_term=1, durable=9, overwrite=True) == TAKEN
    assert write(seq, 13, [2], prev_term=2, durable=9) == TAKEN


def test_a_gap_or_an_unknown_writer_is_refused_unless_it_starts_within_the_durable_prefix():
    seq = WalSequencer()
    write(seq, 1, [1] * 5, prev_term=0)
    assert write(seq, 8, [1], prev_term=1, durable=3) == Decision(False, 4)        # a gap
    fresh = WalSequencer()                                                         # a restarted WAL
    assert write(fresh, 6, [1], prev_term=1, durable=3, overwrite=True) == Decision(False, 4)
    assert write(fresh, 4, [1, 1, 1], prev_term=1, durable=3, overwrite=True) == TAKEN
    assert write(WalSequencer(), 9, [4], prev_term=4, durable=8) == TAKEN           # continues the durable prefix


def test_a_log_restarted_after_a_snapshot_is_taken_anywhere_and_forgets_the_old_terms():
    seq = WalSequencer()
    write(seq, 1, [1] * 5, prev_term=0)
    assert write(seq, 101, [7], prev_term=6, truncate=True) == TAKEN
    assert write(seq, 102, [7], prev_term=7) == TAKEN
    # the old terms are gone: a write that claims one below the restart is refused
    assert not write(seq, 4, [8], prev_term=1, durable=2).taken


def test_lives_a_newer_starts_afresh_and_an_older_is_dropped_without_a_resend():
    seq = WalSequencer()
    write(seq, 1, [1] * 5, prev_term=0, life=7)
    assert write(seq, 6, [1], prev_term=1, durable=0, life=8) == Decision(False, 1)   # knows nothing of life 8
    assert write(seq, 6, [1], prev_term=1, durable=5, life=8) == TAKEN               # from its recovered log
    assert write(seq, 7, [1], prev_term=1, durable=5, life=7) == Decision(False, None)


def test_terms_are_kept_only_above_the_durable_prefix_and_never_more_than_max_runs():
    seq = WalSequencer()
    for term in range(1, MAX_RUNS + 50):                         # a new term at every index
        assert write(seq, term, [term], prev_term=term - 1) == TAKEN
    writer = seq._writers["s1"]
    assert len(writer.runs) == MAX_RUNS
    oldest = writer.runs[0][0]
    # below what is kept the WAL cannot check: refused, resent from the durable prefix
    assert write(seq, oldest - 1, [99], prev_term=oldest - 2, durable=10, overwrite=True) == Decision(False, 11)
    assert write(seq, 11, [99], prev_term=10, durable=10, overwrite=True) == TAKEN
    # the durable prefix prunes: only the run holding durable + 1 and later stay
    write(seq, 12, [99, 100, 101], prev_term=99, durable=11)
    assert [lo for lo, _t in seq._writers["s1"].runs] == [11, 13, 14]
    write(seq, 15, [101], prev_term=101, durable=12)
    assert [lo for lo, _t in seq._writers["s1"].runs] == [13, 14]


def test_without_prev_term_only_indexes_are_checked():
    seq = WalSequencer()
    assert write(seq, 5, [1], prev_term=None) == Decision(False, 5)     # a first plain write above 1
    seq = WalSequencer()
    assert write(seq, 5, [1], prev_term=None, overwrite=True) == TAKEN
    assert write(seq, 6, [9], prev_term=None) == TAKEN                  # a lost overwrite goes unnoticed
    assert write(seq, 5, [9], prev_term=None) == Decision(False, 5)     # into written entries, not flagged
    assert write(seq, 5, [9], prev_term=None, overwrite=True) == TAKEN
