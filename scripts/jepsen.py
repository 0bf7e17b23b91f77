#!/usr/bin/env python3
"""Jepsen-style run: real nodes, concurrent kv clients, faults, linearizability.

    python scripts/jepsen.py --short --nemesis kill,partition --out OUT
    python scripts/jepsen.py --time 1200 --nemesis combined --out OUT
    python scripts/jepsen.py --short --nemesis partition-leader --unsafe stale_reads --out OUT
    python scripts/jepsen.py --time 300 --nemesis disk --out OUT

Writes OUT/history.jsonl, OUT/nemesis.jsonl and OUT/summary.json and prints
a summary.  Exit 0 only if the history is linearizable and every
acknowledged write survives (and, with --nemesis disk, every damaged
member reported its corruption); 1 if not; 2 usage; 3 inconclusive.  As root
the run happens in a network namespace of its own (real partitions with
iptables); see docs/testing.rst, "Jepsen-style runs".
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ra_actors.testing.jepsen.harness import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
