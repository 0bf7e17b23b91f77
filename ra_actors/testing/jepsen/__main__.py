"""``python -m ra_actors.testing.jepsen ...``: the same as ``scripts/jepsen.py``."""
import sys

from .harness import main

sys.exit(main())
