"""Mermaid diagrams (GitHub renders them in comments and Markdown files): the dependency
graph of a configuration, and the changes of a plan with their dependencies.

Edges point from a dependent to what it depends on, as in the DOT output. A diagram is cut
to a character budget (a PR comment is limited), with a closing node counting what it left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from reconciler.model import Action, Address, Change, Plan

DIAGRAM_SHARE = 4  # a diagram takes at most a quarter of a PR comment's budget

_CLASSES = {
    "create": "fill:#dafbe1,stroke:#1a7f37,color:#1a7f37",
    "delete": "fill:#ffebe9,stroke:#cf222e,color:#cf222e",
    "replace": "fill:#fff1e5,stroke:#bc4c00,color:#bc4c00",
    "update": "fill:#fff8c5,stroke:#9a6700,color:#9a6700",
    "unchanged": "fill:#f6f8fa,stroke:#8c959f,color:#57606a",
}
_SYMBOLS = {Action.CREATE: "+", Action.DELETE: "-", Action.REPLACE: "-/+", Action.UPDATE: "~"}


def _label(text: str) -> str:
    """Mermaid node text in quotes; a quote becomes #quot; (Mermaid's entity)."""
    return '"' + text.replace('"', "#quot;") + '"'


def _diagram(
    nodes: Sequence[tuple[Address, str, str]],
    edges: Mapping[Address, Iterable[Address]],
    budget: int | None,
) -> str:
    """`nodes` are (address, label, class) in display order; nodes are kept while they and
    their edges fit the budget, and only edges between kept nodes are drawn."""
    classes = [f"  classDef {name} {style}" for name, style in _CLASSES.items()]
    used = len("flowchart LR\n") + sum(len(line) + 1 for line in classes) + 80  # 80: the "more" node
    order = {address: position for position, (address, _, _) in enumerate(nodes)}
    width = len(f"n{len(nodes)}")
    kept: list[str] = []
    links: list[str] = []
    for position, (address, label, css) in enumerate(nodes):
        line = f"  n{position}[{_label(label)}]:::{css}"
        targets = sorted({order[d] for d in edges.get(address, ()) if d in order})
        cost = len(line) + 1 + len(targets) * (2 * width + 9)
        if budget is not None and used + cost > budget:
            break
        used += cost
        kept.append(line)
        links.extend(f"  n{position} --> n{target}" for target in targets)
    shown = len(kept)
    body = kept + [link for link in links if int(link.rsplit("n", 1)[1]) < shown]
    if shown < len(nodes):
        body.append(f"  more[{_label(f'…and {len(nodes) - shown:,} more not drawn')}]:::unchanged")
    return "\n".join(["flowchart LR", *body, *classes]) + "\n"


def config_mermaid(dependencies: Mapping[Address, Iterable[Address]]) -> str:
    """`reconciler graph --format mermaid`: every resource, edges to what it depends on."""
    nodes = sorted({*dependencies, *(d for deps in dependencies.values() for d in deps)}, key=Address.sort_key)
    return _diagram([(address, str(address), "unchanged") for address in nodes], dependencies, None)


def _change_label(change: Change) -> str:
    symbol = _SYMBOLS.get(change.action)
    address = f"{change.address} (deposed)" if change.deposed else str(change.address)
    return f"{symbol} {address}" if symbol else address


def plan_mermaid(plan: Plan, budget: int | None = None) -> str:
    """The plan's changes (no-ops left out unless something changed depends on them)."""
    changed = [c for c in plan.changes if c.action is not Action.NOOP]
    by_address = {c.address: c for c in plan.changes}
    edges: dict[Address, list[Address]] = {}
    for change in changed:
        edges.setdefault(change.address, []).extend(change.depends_on)
    context = sorted(
        {d for c in changed for d in c.depends_on if d in by_address and by_address[d].action is Action.NOOP}
        | {d for c in changed for d in c.depends_on if d not in by_address},
        key=Address.sort_key,
    )
    nodes = [(c.address, _change_label(c), c.action.value) for c in sorted(changed, key=lambda c: c.address.sort_key())]
    nodes += [(address, str(address), "unchanged") for address in context]
    return _diagram(nodes, edges, budget)


def summary_with_diagram(plan: Plan, markdown: Callable[..., str], limit: int = 65000) -> str:
    """The PR summary (`markdown(plan, limit=...)`) followed by the plan's diagram, within `limit`."""
    if not any(c.action is not Action.NOOP for c in plan.changes):
        return markdown(plan, limit=limit)
    diagram = plan_mermaid(plan, budget=limit // DIAGRAM_SHARE)
    block = f"\n<details open><summary>Changes and dependencies</summary>\n\n```mermaid\n{diagram}```\n\n</details>\n"
    return markdown(plan, limit=limit - len(block)) + block
