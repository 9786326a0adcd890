"""Mermaid diagrams of the configuration's graph and of a plan's changes, within the size
limit of a pull-request comment."""

from __future__ import annotations

import re

from reconciler.model import Action, Address, Change, CostSummary, Kind, Plan
from reconciler.views.mermaid import config_mermaid, plan_mermaid, summary_with_diagram
from reconciler.views.plan_markdown import plan_summary_markdown

KEY = Address(Kind.SSH_KEY, "deploy")
DATA = Address(Kind.VOLUME, "data")
WEB = Address(Kind.INSTANCE, "web")


def plan_of(*changes: Change) -> Plan:
    return Plan(changes=changes, state_serial=1, state_lineage="l", cost=CostSummary(0.0, 0.0))


def change(address: Address, action: Action, *depends_on: Address) -> Change:
    return Change(address, action, "shadeform", None, {"name": address.name}, depends_on=depends_on)


def test_config_graph_as_mermaid() -> None:
    text = config_mermaid({WEB: (KEY, DATA), DATA: (), KEY: ()})
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    names = dict(re.findall(r'^  (n\d+)\["([^"]+)"\]', text, re.M))
    by_label = {label: node for node, label in names.items()}
    assert set(by_label) == {"ssh_keys.deploy", "volumes.data", "instances.web"}
    assert f"  {by_label['instances.web']} --> {by_label['ssh_keys.deploy']}" in lines
    assert f"  {by_label['instances.web']} --> {by_label['volumes.data']}" in lines


def test_plan_diagram_shows_changes_and_the_unchanged_things_they_depend_on() -> None:
    plan = plan_of(
        change(KEY, Action.NOOP),
        change(DATA, Action.REPLACE),
        change(WEB, Action.CREATE, KEY, DATA),
        change(Address(Kind.INSTANCE, "old"), Action.DELETE),
    )
    text = plan_mermaid(plan)
    assert '["+ instances.web"]:::create' in text
    assert '["-/+ volumes.data"]:::replace' in text
    assert '["- instances.old"]:::delete' in text
    assert '["ssh_keys.deploy"]:::unchanged' in text
    ids = {label: node for node, label in re.findall(r'^  (n\d+)\["([^"]+)"\]', text, re.M)}
    assert f"  {ids['+ instances.web']} --> {ids['ssh_keys.deploy']}" in text.splitlines()
    assert f"  {ids['+ instances.web']} --> {ids['-/+ volumes.data']}" in text.splitlines()


def test_big_plan_diagram_is_cut_to_its_budget_and_counts_the_rest() -> None:
    changes = [change(Address(Kind.INSTANCE, "w", i), Action.CREATE, DATA) for i in range(5000)]
    plan = plan_of(change(DATA, Action.CREATE), *changes)
    text = plan_mermaid(plan, budget=4000)
    assert len(text) <= 4000
    drawn = len(re.findall(r"^  n\d+\[", text, re.M))
    left = int(re.search(r"…and ([\d,]+) more not drawn", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert drawn + left == 5001
    # Edges only between drawn nodes.
    for source, target in re.findall(r"^  (n\d+) --> (n\d+)$", text, re.M):
        assert f"  {source}[" in text and f"  {target}[" in text


def test_pr_summary_carries_the_diagram_and_stays_under_the_comment_limit() -> None:
    changes = [change(Address(Kind.INSTANCE, "w", i), Action.CREATE, DATA) for i in range(20_000)]
    plan = plan_of(change(DATA, Action.CREATE), *changes)
    text = summary_with_diagram(plan, plan_summary_markdown)
    assert len(text) <= 65_000
    assert "```mermaid\nflowchart LR\n" in text
    assert "more changes not listed" in text
    small = summary_with_diagram(plan_of(change(WEB, Action.CREATE)), plan_summary_markdown)
    assert small.startswith(plan_summary_markdown(plan_of(change(WEB, Action.CREATE)), limit=65_000).split("\n\n")[0])
    assert '["+ instances.web"]:::create' in small
    no_changes = plan_of(change(WEB, Action.NOOP))
    assert summary_with_diagram(no_changes, plan_summary_markdown) == plan_summary_markdown(no_changes)
