"""The dependency graph between resources: creation order, cycles, targets and DOT export.

Edges point from a dependent to its dependency (`instances.trainer -> volumes.data`):
dependencies are created first and deleted last. Every operation is linear in nodes plus
edges (the topological order adds a log factor for its deterministic tie-break).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from reconciler.errors import GraphCycleError
from reconciler.model import Address


class DependencyGraph:
    """Built from `node -> its dependencies`; dependencies that are not keys become nodes too."""

    def __init__(self, edges: Mapping[Address, Iterable[Address]]) -> None:
        self._dependencies: dict[Address, list[Address]] = {}
        self._dependents: dict[Address, list[Address]] = {}
        for node, dependencies in edges.items():
            self._add_node(node)
            seen: set[Address] = set()
            for dependency in dependencies:
                if dependency in seen:
                    continue
                seen.add(dependency)
                self._add_node(dependency)
                self._dependencies[node].append(dependency)
                self._dependents[dependency].append(node)

    def _add_node(self, node: Address) -> None:
        if node not in self._dependencies:
            self._dependencies[node] = []
            self._dependents[node] = []

    @property
    def nodes(self) -> list[Address]:
        """Every node, sorted by Address.sort_key."""
        return sorted(self._dependencies, key=Address.sort_key)

    def __contains__(self, node: object) -> bool:
        return node in self._dependencies

    def __len__(self) -> int:
        return len(self._dependencies)

    def topological_order(self) -> list[Address]:
        """Dependencies before their dependents; among ready nodes the smallest sort_key first.

        Raises GraphCycleError (with the cycle's path) when no such order exists.
        """
        waiting = {node: len(deps) for node, deps in self._dependencies.items()}
        ready = [(node.sort_key(), node) for node, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order: list[Address] = []
        while ready:
            _, node = heapq.heappop(ready)
            order.append(node)
            for dependent in self._dependents[node]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    heapq.heappush(ready, (dependent.sort_key(), dependent))
        if len(order) != len(self._dependencies):
            cycle = self.find_cycle()
            path = " -> ".join(str(node) for node in cycle or ())
            raise GraphCycleError(f"dependency cycle: {path}")
        return order

    def dependencies(self, addr: Address, transitive: bool = True) -> set[Address]:
        """What `addr` needs to exist first (directly, or through other nodes too)."""
        return self._reach(addr, self._dependencies, transitive)

    def dependents(self, addr: Address, transitive: bool = True) -> set[Address]:
        """What needs `addr` (directly, or through other nodes too)."""
        return self._reach(addr, self._dependents, transitive)

    def _reach(
        self, start: Address, adjacency: dict[Address, list[Address]], transitive: bool
    ) -> set[Address]:
        if start not in adjacency:
            raise KeyError(f"{start} is not in the dependency graph")
        if not transitive:
            return set(adjacency[start])
        found: set[Address] = set()
        stack = list(adjacency[start])
        while stack:
            node = stack.pop()
            if node in found:
                continue
            found.add(node)
            stack.extend(adjacency[node])
        found.discard(start)
        return found

    def find_cycle(self) -> list[Address] | None:
        """One cycle as a closed path (`[a, b, a]`, a self-reference is `[a, a]`), or None."""
        on_path: dict[Address, int] = {}
        done: set[Address] = set()
        for root in self.nodes:
            if root in done:
                continue
            path: list[Address] = [root]
            on_path[root] = 0
            pending = [iter(sorted(self._dependencies[root], key=Address.sort_key))]
            while pending:
                step = next(pending[-1], None)
                if step is None:
                    finished = path.pop()
                    del on_path[finished]
                    done.add(finished)
                    pending.pop()
                    continue
                if step in on_path:
                    return path[on_path[step] :] + [step]
                if step in done:
                    continue
                on_path[step] = len(path)
                path.append(step)
                pending.append(iter(sorted(self._dependencies[step], key=Address.sort_key)))
        return None

    def to_dot(self) -> str:
        """A DOT digraph: one node per address, edges from dependent to dependency."""
        lines = ["digraph reconciler {", "  rankdir=LR;"]
        for node in self.nodes:
            lines.append(f"  {_dot_id(node)} [label={_dot_id(node)}];")
        for node in self.nodes:
            for dependency in sorted(self._dependencies[node], key=Address.sort_key):
                lines.append(f"  {_dot_id(node)} -> {_dot_id(dependency)};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def subgraph_with_dependencies(self, targets: Iterable[Address]) -> set[Address]:
        """The targets and everything they transitively depend on.

        A target without an index (`instances.worker`) selects every counted instance of it.
        Raises KeyError for a target that matches no node.
        """
        by_base: dict[Address, list[Address]] = {}
        for node in self._dependencies:
            if node.index is not None:
                by_base.setdefault(node.base, []).append(node)
        selected: set[Address] = set()
        stack: list[Address] = []
        for target in targets:
            if target in self._dependencies:
                stack.append(target)
            elif target.index is None and target in by_base:
                stack.extend(by_base[target])
            else:
                raise KeyError(f"{target} is not in the dependency graph")
        while stack:
            node = stack.pop()
            if node in selected:
                continue
            selected.add(node)
            stack.extend(self._dependencies[node])
        return selected


def _dot_id(node: Address) -> str:
    escaped = str(node).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
