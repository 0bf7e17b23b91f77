"""The node's server registry: a journal of changes over a compacted
snapshot; damage is named, never skipped (ra_actors.actors.registry)."""
import json

import pytest

import ra_actors as ra
from ra_actors import errors
from ra_actors.actors import registry as reg
from ra_actors.actors.registry import JOURNAL_FILE, REGISTRY_FILE, ServerRegistry


def reloaded(data_dir) -> ServerRegistry:
    r = ServerRegistry()
    r.load(str(data_dir))
    return r


def as_dict(r: ServerRegistry) -> dict:
    return {name: (rec.uid, rec.stopped) for name, rec in r.servers.items()}


def test_every_change_survives_a_reload(tmp_path):
    r = reloaded(tmp_path)
    r.add("a", "a_1")
    r.add("b", "b_1")
    r.set_stopped("a", True)
    r.remove("b")
    r.add("c", "c_1")
    assert as_dict(reloaded(tmp_path)) == {"a": ("a_1", True), "c": ("c_1", False)}


def test_adding_servers_appends_one_line_each_and_never_rewrites_the_registry(tmp_path):
    r = reloaded(tmp_path)
    for i in range(3000):
        r.add(f"s{i}", f"s{i}_uid")
    lines = (tmp_path / JOURNAL_FILE).read_bytes().count(b"\n")
    assert lines == 3000 and not (tmp_path / REGISTRY_FILE).exists()
    assert len(reloaded(tmp_path).servers) == 3000


def test_churn_compacts_the_journal_into_the_registry_file(tmp_path, monkeypatch):
    monkeypatch.setattr(reg, "COMPACT_MIN", 8)
    r = reloaded(tmp_path)
    r.add("keep", "keep_1")
    for i in range(50):
        r.add(f"t{i}", f"t{i}_1")
        r.remove(f"t{i}")
    journal_lines = (tmp_path / JOURNAL_FILE).read_bytes().count(b"\n")
    assert journal_lines < 8 + 2, "the journal was never compacted"
    assert json.loads((tmp_path / REGISTRY_FILE).read_text()).keys() <= {"keep"} | {f"t{i}" for i in range(50)}
    assert as_dict(reloaded(tmp_path)) == {"keep": ("keep_1", False)}


def test_a_torn_last_change_is_cut_and_the_ones_before_it_kept(tmp_path):
    r = reloaded(tmp_path)
    r.add("a", "a_1")
    r.add("b", "b_1")
    journal = tmp_path / JOURNAL_FILE
    whole = journal.read_bytes()
    journal.write_bytes(whole[:-7])          # the last line lost its end: never acknowledged
    assert as_dict(reloaded(tmp_path)) == {"a": ("a_1", False)}
    assert journal.read_bytes() == whole[:whole.index(b"\n") + 1]
    reloaded(tmp_path).add("c", "c_1")       # appends after the cut, on a line of its own
    assert as_dict(reloaded(tmp_path)) == {"a": ("a_1", False), "c": ("c_1", False)}


def test_a_damaged_change_before_the_last_is_corruption_naming_the_journal_and_offset(tmp_path):
    r = reloaded(tmp_path)
    r.add("a", "a_1")
    r.add("b", "b_1")
    journal = tmp_path / JOURNAL_FILE
    raw = bytearray(journal.read_bytes())
    raw[15] ^= 0x01                          # inside the first change's JSON
    journal.write_bytes(bytes(raw))
    with pytest.raises(errors.LogCorruption, match=JOURNAL_FILE) as failure:
        reloaded(tmp_path)
    assert failure.value.offset == 0
    assert journal.read_bytes() == bytes(raw), "a damaged journal was changed"


def test_an_unreadable_registry_file_is_corruption_naming_it(tmp_path):
    (tmp_path / REGISTRY_FILE).write_text('{"a": {"uid": "a_1"')
    with pytest.raises(errors.LogCorruption, match=REGISTRY_FILE):
        reloaded(tmp_path)


def test_a_node_with_a_damaged_registry_refuses_to_start_naming_the_file(tmp_path):
    with ra.local_nodes(["n1"], data_root=str(tmp_path)) as nodes:
        client = nodes.client()
        for name in ("c1", "c2"):
            client.start_cluster(name, "machines.counter", [ra.ServerId(name, "n1")])
    journal = tmp_path / "n1" / JOURNAL_FILE
    raw = bytearray(journal.read_bytes())
    raw[12] ^= 0x01                          # the first server's change
    journal.write_bytes(bytes(raw))
    with pytest.raises(errors.NodeError, match=JOURNAL_FILE):
        with ra.local_nodes(["n1"], data_root=str(tmp_path)):
            pass   # only reached if the node wrongly started without its servers


def test_a_batch_of_new_servers_is_one_append_and_one_fsync(tmp_path, monkeypatch):
    r = reloaded(tmp_path)
    r.add("first", "first_uid")            # the journal exists (its directory is synced once)
    syncs = []
    real_fsync = reg.os.fsync
    monkeypatch.setattr(reg.os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd)))
    r.add_many([(f"s{i}", f"s{i}_uid") for i in range(32)])
    assert len(syncs) == 1
    assert (tmp_path / JOURNAL_FILE).read_bytes().count(b"\n") == 33
    assert as_dict(reloaded(tmp_path)) == {"first": ("first_uid", False),
                                           **{f"s{i}": (f"s{i}_uid", False) for i in range(32)}}
