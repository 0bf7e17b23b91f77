#!/usr/bin/env python3
"""The SQL demo: three local nodes, a replicated SQLite database, bank
transfers running while the leader's node is killed, every step checked
(exit 0 only if all passed).

    python scripts/demo_sql.py            # the narrated run
    python scripts/demo_sql.py --fast     # fewer transfers (CI)

Same as ``ra-actors demo sql``; the code is in ``ra_actors/demos/sql.py``.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ra_actors.demos.sql import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
