"""The small JSON files a node keeps in its data directory (``node.json``,
``node.pid``, ``node.status``...): written whole (temp file + rename),
readable by their owner only; a missing or unreadable one reads as None.

Rules: no Thespian, nothing of the node's other modules: the keeper, the
node's main process and its supervisor all use these.
"""
from __future__ import annotations

import json
import os
import time


def write_json(path: str, value) -> None:
    """Replace ``path`` with ``value`` as JSON, readable by its owner only."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def set_status(data_dir: str, state: str, **extra) -> None:
    """``node.status``: ``starting`` | ``ready`` | ``error`` | ``stopped`` | ``dead``."""
    write_json(os.path.join(data_dir, "node.status"), dict(state=state, time=time.time(), **extra))
