#!/usr/bin/env python3
"""The kv demo: three local nodes, a replicated kv store, the leader's node
killed and brought back, every step checked (exit 0 only if all passed).

    python scripts/demo_kv.py            # the narrated run
    python scripts/demo_kv.py --fast     # fewer keys (CI)

Same as ``ra-actors demo kv``; the code is in ``ra_actors/demos/kv.py``.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ra_actors.demos.kv import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
