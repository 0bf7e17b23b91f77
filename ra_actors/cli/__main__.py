"""``python -m ra_actors.cli ...``: the same as the ``ra-actors`` command."""
import sys

from .program import main

sys.exit(main())
