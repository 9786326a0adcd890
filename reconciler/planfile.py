"""Saved plans (`plan -out FILE`): the exact changes, the state they were made from, no secrets.

Sensitive values are stored only as the same salted digests state keeps; `apply FILE`
takes the values from the configuration again and refuses if any digest differs.

The file carries a SHA-256 of its canonical content: `apply FILE` and `show FILE` refuse a
plan changed in any way (a value, a change added or removed, a duplicated key), so a
saved plan runs exactly what it showed. Reformatting (whitespace, key order) is no change.
The digest detects changes; it is not a signature against someone who recomputes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.errors import PlanError
from reconciler.model import (
    Action,
    ActionReason,
    Address,
    Candidate,
    Change,
    CostSummary,
    ForeignObject,
    Kind,
    Orphan,
    OutputChange,
    Plan,
    Resource,
    get_path,
    mask_sensitive,
)
from reconciler.references import attribute_value, has_placeholder, substitute
from reconciler.state.model import StateDocument
from reconciler.unknowns import AppliedValues

PLAN_FORMAT = "reconciler-plan"
PLAN_FORMAT_VERSION = 1
DIGEST_FIELD = "sha256"


def _stored_after(change: Change) -> dict[str, Any] | None:
    """`after` as the file keeps it: the planner's masked view where a value is sensitive."""
    if not change.sensitive or change.after is None:
        return change.after
    if change.masked_after is None:
        raise ValueError(f"{change.address}: a change with sensitive values but no masked view cannot be saved")
    return change.masked_after


def plan_to_document(plan: Plan, config_name: str) -> dict[str, Any]:
    changes = []
    for change in plan.changes:
        data = dataclasses.asdict(change)
        data["address"] = str(change.address)
        data["action"] = change.action.value
        data["depends_on"] = [str(d) for d in change.depends_on]
        data["after"] = _stored_after(change)
        del data["masked_after"]  # the file's `after` is that view
        changes.append(data)
    return {
        "format": PLAN_FORMAT,
        "format_version": PLAN_FORMAT_VERSION,
        "config_name": config_name,
        "state": {"serial": plan.state_serial, "lineage": plan.state_lineage},
        "cost": {"hourly_before": plan.cost.hourly_before, "hourly_after": plan.cost.hourly_after},
        "notes": list(plan.notes),
        "orphans": [{**dataclasses.asdict(o), "kind": o.kind.value} for o in plan.orphans],
        "foreign": [{**dataclasses.asdict(f), "kind": f.kind.value} for f in plan.foreign],
        "changes": changes,
        "outputs": [{**dataclasses.asdict(o), "action": o.action.value} for o in plan.outputs],
    }


def content_digest(document: dict[str, Any]) -> str:
    """SHA-256 of the plan's canonical JSON (keys sorted, no spaces), its own digest field left out."""
    content = {key: value for key, value in document.items() if key != DIGEST_FIELD}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write_plan_file(path: Path, plan: Plan, config_name: str) -> None:
    document = plan_to_document(plan, config_name)
    document[DIGEST_FIELD] = content_digest(document)
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    path.chmod(0o600)


_REPLAN_HINT = "a saved plan runs exactly what it showed; make a new one with `reconciler plan -out FILE`"


def _unique_keys(path: Path) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """JSON objects as dicts, refusing a key written twice (json keeps the last one silently)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            raise PlanError(
                f"{path} was changed after it was saved: a key appears twice in one object", hint=_REPLAN_HINT
            )
        return result

    return hook


def _check_integrity(path: Path, raw: dict[str, Any]) -> None:
    """Refuse a plan whose content is not exactly what `plan -out` wrote."""
    recorded = raw.get(DIGEST_FIELD)
    if not isinstance(recorded, str):
        raise PlanError(
            f"{path} is a damaged plan file: it carries no {DIGEST_FIELD} integrity digest",
            hint=_REPLAN_HINT,
        )
    if not hmac.compare_digest(recorded, content_digest(raw)):
        raise PlanError(
            f"{path} was changed after it was saved: its content no longer matches its {DIGEST_FIELD} digest",
            hint=_REPLAN_HINT,
        )


def read_plan_file(path: Path) -> tuple[Plan, str]:
    """The plan in a saved file and the name of the configuration it was made from."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys(path))
    except FileNotFoundError as exc:
        raise PlanError(f"plan file {path} does not exist") from exc
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PlanError(
            f"{path} is not a reconciler plan file (corrupt or not JSON)",
            hint="make a new one with `reconciler plan -out FILE`",
        ) from exc
    if not isinstance(raw, dict) or raw.get("format") != PLAN_FORMAT:
        raise PlanError(
            f"{path} is not a reconciler plan file", hint="make one with `reconciler plan -out FILE`"
        )
    if raw.get("format_version") != PLAN_FORMAT_VERSION:
        raise PlanError(
            f"{path} has plan format version {raw.get('format_version')}; this reconciler reads 1"
        )
    _check_integrity(path, raw)
    try:
        changes = tuple(
            Change(
                **{
                    **c,
                    "address": Address.parse(c["address"]),
                    "action": Action(c["action"]),
                    "depends_on": tuple(Address.parse(d) for d in c["depends_on"]),
                    "reasons": tuple(c["reasons"]),
                    "replace_paths": tuple(c["replace_paths"]),
                    "sensitive": tuple(c["sensitive"]),
                    "computed": tuple(c.get("computed", ())),
                    "unknown": tuple(c.get("unknown", ())),
                    "candidates": tuple(Candidate(**x) for x in c.get("candidates", ())),
                    "reason": ActionReason(c["reason"]) if c.get("reason") is not None else None,
                    "masked_after": c["after"] if c["sensitive"] and c["after"] is not None else None,
                }
            )
            for c in raw["changes"]
        )
        outputs = tuple(OutputChange(**{**o, "action": Action(o["action"])}) for o in raw.get("outputs", ()))
        plan = Plan(
            changes=changes,
            state_serial=int(raw["state"]["serial"]),
            state_lineage=str(raw["state"]["lineage"]),
            cost=CostSummary(**raw["cost"]),
            notes=tuple(raw.get("notes", ())),
            orphans=tuple(Orphan(**{**o, "kind": Kind(o["kind"])}) for o in raw.get("orphans", ())),
            outputs=outputs,
            foreign=tuple(ForeignObject(**{**f, "kind": Kind(f["kind"])}) for f in raw.get("foreign", ())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"{path} is a damaged plan file: {exc}", hint="make a new plan") from exc
    return plan, str(raw.get("config_name", ""))


def restore_secrets(
    plan: Plan,
    resources: dict[Address, Resource],
    config_name: str,
    plan_config: str,
    doc: StateDocument | None = None,
) -> Plan:
    """Put sensitive values back from the configuration, proving they are the planned ones.

    A sensitive value that uses a reference is compared as the plan saw it: with what state
    knows substituted (an object that stays), or as written (known only after apply).
    """
    if plan_config and plan_config != config_name:
        raise PlanError(
            f"the plan was made from configuration '{plan_config}', not '{config_name}'",
            hint="run apply with -f pointing at the configuration the plan was made from",
        )
    restored = []
    for change in plan.changes:
        if not change.sensitive or change.after is None:
            restored.append(change)
            continue
        res = resources.get(change.address)
        if res is None:
            raise PlanError(f"{change.address}: the configuration no longer declares it; plan again")
        after = dict(change.after)
        source = _as_planned(res, change.sensitive, resources, doc)
        masked_now = mask_sensitive(source, res.sensitive, plan.state_lineage)
        for path in change.sensitive:
            if get_path(masked_now, path) != get_path(after, path):
                raise PlanError(
                    f"{change.address}: the sensitive value {path} changed since the plan was made",
                    hint="plan again",
                )
        after = _copy_paths(after, source, change.sensitive)
        restored.append(dataclasses.replace(change, after=after))
    return dataclasses.replace(plan, changes=tuple(restored))


def _as_planned(
    res: Resource, paths: tuple[str, ...], resources: dict[Address, Resource], doc: StateDocument | None
) -> dict[str, Any]:
    referring = [p for p in paths if has_placeholder(get_path(res.attributes, p))]
    if not referring or doc is None:
        return res.attributes
    values = AppliedValues(doc, {})
    known: dict[str, Any] = {}
    for path in referring:
        resolved, unknown = substitute(
            get_path(res.attributes, path), lambda r: attribute_value(r, resources, values.read)
        )
        if not unknown:
            known[path] = resolved
    source = json.loads(json.dumps(res.attributes))
    return _copy_paths(source, _nest(known), tuple(known)) if known else source


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        parts = path.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def _copy_paths(target: dict[str, Any], source: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    result = json.loads(json.dumps(target))
    for path in paths:
        parts = path.split(".")
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = get_path(source, path)
    return result
