"""Jepsen-style runs against real ra_actors nodes.

``python scripts/jepsen.py`` (or ``python -m ra_actors.testing.jepsen``)
starts real nodes, a kv cluster, concurrent client processes and a
nemesis, records a history and checks it; see :mod:`.harness` and
``docs/testing.rst``.

Modules: :mod:`.harness` (the run, options, summary, exit status; its
``main`` is the entry point), :mod:`.cluster` (nodes with their own
addresses), :mod:`.clients` (the workload processes), :mod:`.nemesis`
(faults), :mod:`.partition` (network namespace and iptables),
:mod:`.report` (merge, checks, figures) and :mod:`.node_shim` (start-up
hook of the node processes).

Rule: this ``__init__`` imports nothing, so the modules may import each
other through the package (``from . import report``) without an import
cycle.
"""
