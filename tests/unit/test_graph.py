"""DependencyGraph: order, reachability, cycles, DOT export and target selection."""

from __future__ import annotations

import re

import pytest

from reconciler.errors import GraphCycleError
from reconciler.graph import DependencyGraph
from reconciler.model import Address


def a(text: str) -> Address:
    return Address.parse(text)


def graph(edges: dict[str, list[str]]) -> DependencyGraph:
    return DependencyGraph({a(node): [a(dep) for dep in deps] for node, deps in edges.items()})


STACK = {
    "instances.web[0]": ["ssh_keys.deploy", "volumes.data[0]"],
    "instances.web[1]": ["ssh_keys.deploy", "volumes.data[1]"],
    "instances.proxy": ["instances.web[0]", "instances.web[1]"],
    "volumes.data[0]": [],
    "volumes.data[1]": [],
}


def test_topological_order_puts_dependencies_first_and_breaks_ties_by_sort_key() -> None:
    order = [str(node) for node in graph(STACK).topological_order()]
    assert order == [
        "ssh_keys.deploy",
        "volumes.data[0]",
        "volumes.data[1]",
        "instances.web[0]",
        "instances.web[1]",
        "instances.proxy",
    ]


def test_topological_order_is_independent_of_insertion_order() -> None:
    reversed_edges = dict(reversed(list(STACK.items())))
    assert graph(reversed_edges).topological_order() == graph(STACK).topological_order()


def test_ties_between_unrelated_nodes_follow_kind_then_name_then_index() -> None:
    g = graph({"instances.b": [], "instances.a": [], "volumes.z": [], "ssh_keys.k": [], "instances.a[2]": []})
    assert [str(n) for n in g.topological_order()] == [
        "ssh_keys.k",
        "volumes.z",
        "instances.a",
        "instances.a[2]",
        "instances.b",
    ]


def test_dependency_only_named_as_a_target_becomes_a_node() -> None:
    g = graph({"instances.x": ["volumes.v"]})
    assert a("volumes.v") in g
    assert len(g) == 2
    assert g.dependencies(a("volumes.v")) == set()


def test_dependencies_direct_and_transitive() -> None:
    g = graph(STACK)
    proxy = a("instances.proxy")
    assert g.dependencies(proxy, transitive=False) == {a("instances.web[0]"), a("instances.web[1]")}
    assert g.dependencies(proxy) == {
        a("instances.web[0]"),
        a("instances.web[1]"),
        a("ssh_keys.deploy"),
        a("volumes.data[0]"),
        a("volumes.data[1]"),
    }


def test_dependents_direct_and_transitive() -> None:
    g = graph(STACK)
    key = a("ssh_keys.deploy")
    assert g.dependents(key, transitive=False) == {a("instances.web[0]"), a("instances.web[1]")}
    assert g.dependents(key) == {a("instances.web[0]"), a("instances.web[1]"), a("instances.proxy")}
    assert g.dependents(a("volumes.data[1]")) == {a("instances.web[1]"), a("instances.proxy")}


def test_unknown_node_is_a_key_error() -> None:
    with pytest.raises(KeyError, match=r"instances\.ghost"):
        graph(STACK).dependencies(a("instances.ghost"))


def test_duplicate_edges_count_once() -> None:
    g = graph({"instances.x": ["volumes.v", "volumes.v"]})
    assert g.topological_order() == [a("volumes.v"), a("instances.x")]
    assert g.to_dot().count("->") == 1


def test_acyclic_graph_has_no_cycle() -> None:
    assert graph(STACK).find_cycle() is None


def test_find_cycle_returns_a_closed_path() -> None:
    g = graph(
        {
            "instances.a": ["volumes.b"],
            "volumes.b": ["ssh_keys.c"],
            "ssh_keys.c": ["instances.a"],
            "instances.free": [],
        }
    )
    cycle = g.find_cycle()
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {a("instances.a"), a("volumes.b"), a("ssh_keys.c")}
    for node, following in zip(cycle, cycle[1:], strict=False):
        assert following in g.dependencies(node, transitive=False)


def test_self_reference_is_a_cycle() -> None:
    assert graph({"instances.a": ["instances.a"]}).find_cycle() == [a("instances.a"), a("instances.a")]


def test_topological_order_of_a_cycle_raises_with_the_path() -> None:
    g = graph({"instances.a": ["instances.b"], "instances.b": ["instances.a"], "volumes.x": []})
    with pytest.raises(GraphCycleError, match=r"instances\.a -> instances\.b -> instances\.a"):
        g.topological_order()


def test_to_dot_is_a_digraph_with_labelled_nodes_and_edges_to_dependencies() -> None:
    dot = graph(STACK).to_dot()
    assert dot.startswith("digraph reconciler {\n")
    assert dot.rstrip().endswith("}")
    assert '  "instances.web[0]" [label="instances.web[0]"];' in dot
    assert '  "instances.proxy" -> "instances.web[1]";' in dot
    assert '  "instances.web[1]" -> "volumes.data[1]";' in dot
    statement = re.compile(r'^  ("[^"\\]*"( -> "[^"\\]*")?( \[label="[^"\\]*"\])?|rankdir=LR);$')
    body = dot.strip().splitlines()[1:-1]
    assert body and all(statement.match(line) for line in body), body
    assert sum("->" in line for line in body) == 6


def test_subgraph_with_dependencies_selects_targets_and_what_they_need() -> None:
    g = graph(STACK)
    assert g.subgraph_with_dependencies([a("instances.web[1]")]) == {
        a("instances.web[1]"),
        a("ssh_keys.deploy"),
        a("volumes.data[1]"),
    }


def test_subgraph_target_without_index_selects_every_counted_member() -> None:
    g = graph(STACK)
    selected = g.subgraph_with_dependencies([a("instances.web")])
    assert selected == {
        a("instances.web[0]"),
        a("instances.web[1]"),
        a("ssh_keys.deploy"),
        a("volumes.data[0]"),
        a("volumes.data[1]"),
    }


def test_subgraph_of_an_unknown_target_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="instances.nope"):
        graph(STACK).subgraph_with_dependencies([a("instances.nope")])


def test_long_chain_needs_no_recursion() -> None:
    size = 20_000
    edges = {
        Address.parse(f"instances.n[{i}]"): [Address.parse(f"instances.n[{i + 1}]")] for i in range(size)
    }
    g = DependencyGraph(edges)
    order = g.topological_order()
    assert order[0] == Address.parse(f"instances.n[{size}]")
    assert order[-1] == Address.parse("instances.n[0]")
    assert g.find_cycle() is None
    assert len(g.dependencies(Address.parse("instances.n[0]"))) == size
