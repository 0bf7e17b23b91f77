"""The counters file on its own (ra_actors.metrics.block): slots, their
owner and writer, readers that never wait, and the documented names."""
from __future__ import annotations

import pathlib
import re
import struct

from ra_actors.metrics import block
from ra_actors.metrics.block import CountersFile, CountersReader, SlotWriter
from ra_actors.metrics.exporter import metric_names, metrics_text
from ra_actors.metrics.fields import SERVER_FIELDS, SERVICE_COUNTERS
from ra_actors.metrics.writers import server_writer, service_writer
from ra_actors.shell.server import SERVER_COUNTERS

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def _file(tmp_path):
    return CountersFile.create(str(tmp_path), "n1", SERVER_COUNTERS, SERVICE_COUNTERS)


def test_a_server_slot_is_written_by_its_writer_and_read_by_anyone(tmp_path):
    owner = _file(tmp_path)
    slot = owner.allocate("kv", "kv-cluster")
    assert slot == len(block.SERVICE_SLOTS)
    owner.set_status("kv", block.STATUS_RUNNING, 42)
    writer = server_writer(str(tmp_path), slot)
    values = tuple(range(1, len(SERVER_COUNTERS) + 1))
    writer.publish(values)
    with CountersReader(tmp_path) as reader:
        [server] = [s for s in reader.slots() if s.kind == "server"]
    assert (server.name, server.cluster, server.status, server.incarnation) == ("kv", "kv-cluster", "running", 42)
    assert server.values == dict(zip(SERVER_COUNTERS, values))
    assert owner.read_server("kv") == (dict(zip(SERVER_COUNTERS, values)), block.STATUS_RUNNING)
    assert (tmp_path / "counters").stat().st_mode & 0o777 == 0o600


def test_counters_go_on_across_writers_and_gauges_do_not(tmp_path):
    owner = _file(tmp_path)
    slot = owner.allocate("kv", "kv")
    server_writer(str(tmp_path), slot).publish([7] * len(SERVER_COUNTERS))
    assert owner.allocate("kv", "kv") == slot, "a restarted server keeps its slot"
    server_writer(str(tmp_path), slot).publish([1] * len(SERVER_COUNTERS))
    values, _ = owner.read_server("kv")
    for name in SERVER_COUNTERS:
        assert values[name] == (8 if SERVER_FIELDS[name][0] == "counter" else 1), name


def test_a_writer_killed_mid_write_is_repaired_by_the_next(tmp_path):
    owner = _file(tmp_path)
    slot = owner.allocate("kv", "kv")
    off = block.HEADER_SIZE + slot * block.SLOT_SIZE
    with open(tmp_path / "counters", "r+b") as f:          # seq left odd: a write never finished
        f.seek(off)
        f.write(struct.pack("<Q", 5))
    values, _ = owner.read_server("kv")                   # readers give up waiting, never hang
    assert values["term"] == 0
    writer = server_writer(str(tmp_path), slot)
    writer.publish([3] * len(SERVER_COUNTERS))
    with open(tmp_path / "counters", "rb") as f:
        f.seek(off)
        assert struct.unpack("<Q", f.read(8))[0] % 2 == 0
    assert owner.read_server("kv")[0]["term"] == 3


def test_freed_slots_are_reused_and_services_have_theirs(tmp_path):
    owner = _file(tmp_path)
    a = owner.allocate("a", "c")
    owner.free("a")
    assert owner.read_server("a") is None
    assert owner.allocate("b", "c") == a
    with CountersReader(tmp_path) as reader:
        assert {s.name for s in reader.slots() if s.kind == "server"} == {"b"}
    wal = service_writer(str(tmp_path), "wal")
    wal.publish(range(len(SERVICE_COUNTERS["wal"])))
    with CountersReader(tmp_path) as reader:
        kinds = {s.kind: s for s in reader.slots()}
    assert kinds["wal"].values["batches"] == 1 and kinds["wal"].cluster == "n1"
    assert set(kinds) == {"wal", "segment_writer", "snapshot_writer", "server"}


def test_long_names_are_cut_to_fit_their_slot(tmp_path):
    owner = _file(tmp_path)
    owner.allocate("s" * 1000, "c" * 1000)
    with CountersReader(tmp_path) as reader:
        [server] = [s for s in reader.slots() if s.kind == "server"]
    assert server.name.startswith("sss") and server.name.endswith("…") and len(server.name) < 446


def test_no_counters_file_means_no_writer(tmp_path):
    assert server_writer(str(tmp_path), 3) is None and service_writer(str(tmp_path), "wal") is None
    assert SlotWriter.open(str(tmp_path), 0, 1, [True]) is None


def test_every_exported_metric_is_documented(tmp_path):
    # docs/api.rst's table of metrics names exactly what the export can hold
    text = (DOCS / "api.rst").read_text()
    section = text[text.index("\nMetrics\n~~~~~~~\n"):]
    section = section[:section.index("\n.. test-append")]
    documented = re.findall(r"^``(ra_\w+)``\s+(counter|gauge)\s+\S", section, re.M)
    assert sorted(name for name, _kind in documented) == sorted(metric_names())
    for name, kind in documented:
        assert (kind == "counter") == name.endswith("_total"), name
    _file(tmp_path)
    exported = metrics_text([str(tmp_path)])
    for name in ("ra_wal_batches_total", "ra_snapshot_writer_snapshots_total"):
        assert name in exported
