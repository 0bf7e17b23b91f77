"""The Prometheus view of a node's counters (``ra-actors metrics``, and the
HTTP endpoint of a node started with ``metrics_port``).

Rules:

* Read only: a :class:`CountersCollector` maps each node's counters file
  read-only at every collection (:class:`~.block.CountersReader`) and asks
  no actor anything, so a wedged or busy server is still scraped.  A node
  restarted since the last scrape has a new file: it is opened again.
* Names: ``ra_server_<field>`` with labels ``node``, ``server`` and
  ``cluster`` for each server slot (a server that does not run keeps its
  last values, with ``ra_server_up 0``), ``ra_<service>_<field>`` with
  label ``node`` for the WAL, the segment writer and the snapshot writer.
  Counters get Prometheus's ``_total``; ``commit_latency`` is exported in
  seconds (``ra_server_commit_latency_seconds``), sizes in bytes; ``state``
  and ``membership`` are labels of ``ra_server_state`` and
  ``ra_server_membership`` (value 1).  :func:`metric_names` lists them all.
* The HTTP server binds the node's own address (never ``0.0.0.0``) and is
  prometheus_client's: it serves ``/metrics`` and nothing that changes
  anything.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .block import CountersReader
from .fields import COUNTER, MEMBERSHIP_NAMES, SERVER_FIELDS, SERVICE_FIELDS, STATE_NAMES

__all__ = ["CountersCollector", "metrics_text", "serve", "metric_names"]

_SERVER_LABELS = ["node", "server", "cluster"]
# gauges whose Prometheus name says their unit (and their scale)
_UNITS = {"commit_latency": ("commit_latency_seconds", 0.001), "current_file_size": ("current_file_size_bytes", 1),
          "max_file_size": ("max_file_size_bytes", 1)}
_LABELLED = ("state", "membership")


def _family(prefix: str, name: str, kind: str, help_text: str, labels: list[str]) -> tuple[Metric, float]:
    if kind == COUNTER:
        return CounterMetricFamily(f"{prefix}_{name}", help_text, labels=labels), 1
    metric_name, scale = _UNITS.get(name, (name, 1))
    return GaugeMetricFamily(f"{prefix}_{metric_name}", help_text, labels=labels), scale


def metric_names() -> list[str]:
    """Every metric name the export can contain (counters with ``_total``)."""
    names = ["ra_server_up", "ra_server_state", "ra_server_membership"]
    for name, (kind, _h) in SERVER_FIELDS.items():
        if name not in _LABELLED:
            names.append(f"ra_server_{_UNITS.get(name, (name,))[0]}" + ("_total" if kind == COUNTER else ""))
    for service, fields in SERVICE_FIELDS.items():
        for name, (kind, _h) in fields.items():
            names.append(f"ra_{service}_{_UNITS.get(name, (name,))[0]}" + ("_total" if kind == COUNTER else ""))
    return names


class CountersCollector:
    """A prometheus_client collector over the counters files of
    ``data_dirs`` (see the module rules)."""

    def __init__(self, data_dirs: Iterable[str]) -> None:
        self.data_dirs = [os.path.abspath(d) for d in data_dirs]
        self._readers: dict[str, CountersReader] = {}

    def _reader(self, data_dir: str) -> CountersReader | None:
        reader = self._readers.get(data_dir)
        if reader is not None and reader.replaced():
            reader.close()
            reader = None
        if reader is None:
            try:
                reader = CountersReader(data_dir)
            except (FileNotFoundError, ValueError):
                self._readers.pop(data_dir, None)
                return None
            self._readers[data_dir] = reader
        return reader

    def collect(self) -> Iterator[Metric]:
        server = {n: _family("ra_server", n, k, h, _SERVER_LABELS)
                  for n, (k, h) in SERVER_FIELDS.items() if n not in _LABELLED}
        up = GaugeMetricFamily("ra_server_up", "1 if the server runs, 0 if it is stopped or exited.",
                               labels=_SERVER_LABELS)
        state = GaugeMetricFamily("ra_server_state", "The server's role, as label state (value 1).",
                                  labels=[*_SERVER_LABELS, "state"])
        membership = GaugeMetricFamily("ra_server_membership", "The server's membership, as label "
                                       "membership (value 1).", labels=[*_SERVER_LABELS, "membership"])
        services = {kind: {n: _family(f"ra_{kind}", n, k, h, ["node"]) for n, (k, h) in fields.items()}
                    for kind, fields in SERVICE_FIELDS.items()}
        for data_dir in self.data_dirs:
            reader = self._reader(data_dir)
            if reader is None:
                continue
            node = reader.node
            for slot in reader.slots():
                if slot.kind == "server":
                    labels = [node, slot.name, slot.cluster]
                    up.add_metric(labels, 1 if slot.status == "running" else 0)
                    state.add_metric([*labels, STATE_NAMES.get(slot.values.get("state", 0), "unknown")], 1)
                    membership.add_metric(
                        [*labels, MEMBERSHIP_NAMES.get(slot.values.get("membership", 0), "unknown")], 1)
                    families: dict[str, Any] = server
                else:
                    labels = [node]
                    families = services.get(slot.kind, {})
                for name, value in slot.values.items():
                    fam = families.get(name)
                    if fam is not None:
                        metric, scale = fam
                        metric.add_metric(labels, value * scale if scale != 1 else value)
        yield up
        yield state
        yield membership
        for metric, _scale in server.values():
            yield metric
        for fams in services.values():
            for metric, _scale in fams.values():
                yield metric

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


def metrics_text(data_dirs: Iterable[str]) -> str:
    """The counters of the nodes of ``data_dirs`` in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    collector = CountersCollector(data_dirs)
    registry.register(collector)
    try:
        return generate_latest(registry).decode("utf-8")
    finally:
        collector.close()


def serve(host: str, port: int, data_dir: str) -> tuple[Any, int]:
    """Serve the counters of ``data_dir`` at ``http://host:port/metrics`` (in
    a daemon thread); returns the server and the port it listens on (``port``
    0: one the system chose)."""
    from prometheus_client import start_http_server
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CountersCollector([data_dir]))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, server.server_address[1]
