"""Names from the network resolve only to what a machine or the node's
configuration declares (``ra_actors.shell.names``); nothing is imported
before a name passes."""
from __future__ import annotations

import sys

import pytest

from ra_actors import errors
from ra_actors.actors.server import load_machine
from ra_actors.actors.user_actors import load_actor_class
from ra_actors.shell.names import ModulePolicy, NameRefused, node_modules, parse, query_function


@pytest.mark.parametrize("name", ["builtins:dict.clear", "machines.kv:_private", "machines.kv:read.x",
                                  "machines.kv", ":read", "machines..kv:read", "machines.kv:", 42, None,
                                  "machines.kv:__class__", "machines/kv:read"])
def test_malformed_or_chained_names_are_refused(name):
    with pytest.raises(NameRefused):
        parse(name)


def test_a_query_names_a_public_function_of_the_clusters_own_machine_module():
    import machines.kv
    assert query_function("machines.kv", "machines.kv:read") is machines.kv.read


@pytest.mark.parametrize("name, why", [
    ("builtins:dict", "another module"),
    ("machines.counter:read", "another machine's module"),
    ("machines.kv:apply", "a machine callback"),
    ("machines.kv:init", "a machine callback"),
    ("machines.kv:NoSuch", "not defined"),
    ("machines.kv:Any", "imported into the module, not defined there"),
])
def test_a_query_outside_the_machines_own_functions_is_refused(name, why):
    with pytest.raises(NameRefused):
        query_function("machines.kv", name)


def test_a_machine_that_declares_its_queries_allows_exactly_those(tmp_path, monkeypatch):
    (tmp_path / "declared_machine.py").write_text(
        "QUERIES = ('size',)\n"
        "def init(config): return {}\n"
        "def apply(meta, cmd, state): return state, None\n"
        "def size(state): return len(state)\n"
        "def secret(state): return state\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert query_function("declared_machine", "declared_machine:size").__name__ == "size"
    with pytest.raises(NameRefused, match="declares its queries"):
        query_function("declared_machine", "declared_machine:secret")


def test_modules_outside_the_allowed_list_are_refused_before_any_import():
    policy = ModulePolicy()
    assert policy.allows("machines.kv") and not policy.allows("machinesx") and not policy.allows("os")
    sys.modules.pop("json.tool", None)
    for name in ("json.tool:main", "os:system", "builtins:exec"):
        with pytest.raises(NameRefused, match="allowed modules"):
            policy.call(name)
    assert "json.tool" not in sys.modules, "refused before it was imported"
    with pytest.raises(NameRefused, match="allow-module"):
        policy.machine("wordcount")
    assert ModulePolicy(["wordcount"]).machine("wordcount") == ("wordcount", None)
    assert ModulePolicy(["shop"]).actor_class("shop.actors:Cart") == ("shop.actors", "Cart")


def test_a_modcall_names_a_function_defined_in_an_allowed_module():
    import machines.kv
    policy = ModulePolicy()
    assert policy.call("machines.kv:read") is machines.kv.read
    with pytest.raises(NameRefused, match="no public function"):
        policy.call("machines.kv:Any")


def test_the_allowed_list_itself_is_checked():
    with pytest.raises(ValueError, match="not a module name"):
        ModulePolicy(["ok", "not a module"])


def test_a_nodes_allowed_modules_add_to_the_shipped_machines():
    assert node_modules(None) == ("machines",)
    assert node_modules(["wordcount", "machines", "shop.actors"]) == ("machines", "wordcount", "shop.actors")
    with pytest.raises(ValueError, match="list of module names"):
        node_modules("wordcount")                    # a string is not a list of names
    with pytest.raises(ValueError, match="not a module name"):
        node_modules(["os:system"])


def test_a_machine_or_actor_class_is_loaded_only_from_an_allowed_module():
    sys.modules.pop("json.tool", None)
    with pytest.raises(NameRefused, match="allowed modules"):
        load_machine("json.tool", ModulePolicy())
    assert "json.tool" not in sys.modules
    with pytest.raises(NameRefused):
        load_machine("machines.kv:os.system", ModulePolicy())      # no attribute chains
    import machines.kv
    assert load_machine("machines.kv", ModulePolicy()) is machines.kv
    with pytest.raises(errors.ActorClassError, match="allowed"):
        load_actor_class("json.tool:Thing", "n1", ModulePolicy())
    assert "json.tool" not in sys.modules
