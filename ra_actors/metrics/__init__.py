"""Counters and metrics of a node (Ra's ``ra_counters`` / seshat).

* :mod:`.fields` — every counter, its kind and what it means (the one list
  the docs, the Prometheus export and ``key_metrics`` read);
* :mod:`.block` — the node's counters file: one fixed-size slot per server
  and per storage service, written by whoever owns the slot, read by anyone
  without asking the writer;
* :mod:`.exporter` — the Prometheus view of a counters file: the text
  format (``ra-actors metrics``) and the HTTP endpoint of a node started
  with ``metrics_port``.

Nothing here imports Thespian.
"""
