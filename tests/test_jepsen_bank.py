"""The bank workload's checker (ra_actors/testing/jepsen/bank.py) on
hand-written histories: each way a replicated transaction can break is
caught, and a correct history passes."""
from __future__ import annotations

import random

from ra_actors.testing.jepsen.bank import check_bank, pick_transfer

ACCTS, OPEN = 3, 10


class H:
    """A history under construction."""

    def __init__(self):
        self.events = []

    def op(self, process, f, value, kind, result=None):
        self.events.append({"process": process, "type": "invoke", "f": f, "value": value,
                            "time": len(self.events)})
        if kind is not None:
            self.events.append({"process": process, "type": kind, "f": f,
                                "value": result if f == "read" else value, "time": len(self.events)})
        return self


def check(h, balances, rows):
    return check_bank(h.events, {"balances": balances, "transfers": rows}, ACCTS, OPEN)


def test_a_correct_history_is_valid():
    h = (H().op(0, "transfer", [1, 1, 2, 4], "ok")
         .op(1, "read", None, "ok", [6, 14, 10])
         .op(0, "transfer", [2, 2, 3, 20], "fail")          # would overdraw: refused
         .op(1, "transfer", [1_000_001, 3, 1, 5], "info"))   # unknown; it was applied
    verdict = check(h, [11, 14, 5], [[1, 1, 2, 4], [1_000_001, 3, 1, 5]])
    assert verdict["verdict"] == "valid", verdict
    assert (verdict["acknowledged"], verdict["refused"], verdict["uncertain"], verdict["applied"]) == (1, 1, 1, 2)


def test_a_read_of_half_a_transfer_is_not_a_consistent_cut():
    h = H().op(0, "transfer", [1, 1, 2, 4], "ok").op(1, "read", None, "ok", [6, 10, 10])
    verdict = check(h, [6, 14, 10], [[1, 1, 2, 4]])
    assert verdict["verdict"] == "invalid"
    assert "not a consistent cut" in verdict["problems"][0]


def test_a_lost_acknowledged_transfer_is_caught():
    h = H().op(0, "transfer", [1, 1, 2, 4], "ok")
    verdict = check(h, [10, 10, 10], [])
    assert verdict["verdict"] == "invalid" and "lost" in verdict["problems"][0]


def test_a_refused_transfer_in_the_table_is_caught():
    h = H().op(0, "transfer", [1, 1, 2, 4], "fail")
    verdict = check(h, [6, 14, 10], [[1, 1, 2, 4]])
    assert verdict["verdict"] == "invalid" and "refused transfer 1" in verdict["problems"][0]


def test_a_transfer_applied_twice_shows_in_the_balances():
    h = H().op(0, "transfer", [1, 1, 2, 4], "ok")
    verdict = check(h, [2, 18, 10], [[1, 1, 2, 4]])
    assert verdict["verdict"] == "invalid" and "applied twice or in part" in verdict["problems"][0]


def test_an_invented_transfer_and_no_final_read():
    h = H().op(0, "transfer", [1, 1, 2, 4], "ok")
    verdict = check(h, [6, 14, 10], [[1, 1, 2, 4], [9, 3, 1, 0]])
    assert verdict["verdict"] == "invalid" and "never invoked" in verdict["problems"][0]
    assert check_bank(h.events, None, ACCTS, OPEN)["verdict"] == "unknown"


def test_random_transfers_move_between_distinct_accounts():
    rng = random.Random(7)
    for _ in range(200):
        src, dst, amount = pick_transfer(rng, 4, 100)
        assert src != dst and 1 <= src <= 4 and 1 <= dst <= 4 and 1 <= amount <= 50


def test_a_transfer_in_the_table_twice_is_caught():
    h = H().op(0, "transfer", [1, 1, 2, 4], "ok")
    verdict = check(h, [2, 18, 10], [[1, 1, 2, 4], [1, 1, 2, 4]])
    assert verdict["verdict"] == "invalid" and "more than once: [1]" in verdict["problems"][0]
