#!/usr/bin/env python3
"""The queue demo: a fifo cluster on three local nodes, two consumer
processes, one killed mid-stream; its unsettled messages are redelivered to
the other, nothing is lost, nothing settled is delivered twice (exit 0 only
if every check passed).

    python scripts/demo_queue.py            # the narrated run
    python scripts/demo_queue.py --fast     # fewer messages (CI)

Same as ``ra-actors demo queue``; the code is in ``ra_actors/demos/queue.py``.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ra_actors.demos.queue import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
