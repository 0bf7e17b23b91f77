"""Narrated demos: ``ra-actors demo kv|queue`` (also ``scripts/demo_kv.py``
and ``scripts/demo_queue.py``).

Each demo module has ``add_arguments(parser)``, ``run(args) -> int`` and
``main(argv) -> int``; the exit status is 0 only if every check passed.
"""
