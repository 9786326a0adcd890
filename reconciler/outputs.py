"""Outputs: their values in a plan (known or not yet), after apply, and as state keeps them.

State keeps a non-sensitive output's value and a sensitive one's salted digest only; the
value of a sensitive output is computed again from the configuration when a user asks for
it by name (`output -raw NAME`, `output -json`), and refused if it is not what was applied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.model import Action, Address, Change, Output, OutputChange
from reconciler.references import Reference, attribute_value, references_in, substitute
from reconciler.state.model import OutputState, StateDocument
from reconciler.unknowns import AppliedValues, PlannedValues


def output_digest(value: Any, salt: str) -> str:
    text = json.dumps(value, sort_keys=True)
    return "sha256:" + hashlib.sha256(f"{salt}\0{text}".encode()).hexdigest()[:32]


def value_type(value: Any) -> Any:
    """Terraform's type notation for a JSON value (`string`, `["list", "string"]`, ...)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str) or value is None:
        return "string"
    if isinstance(value, list):
        types = [value_type(v) for v in value]
        if types and all(t == types[0] for t in types):
            return ["list", types[0]]
        return ["tuple", types]
    if isinstance(value, dict):
        return ["object", {k: value_type(v) for k, v in value.items()}]
    return "string"


def _stored(state: OutputState | None) -> Any:
    if state is None:
        return None
    return state.digest if state.sensitive else state.value


def plan_outputs(
    outputs: Mapping[str, Output],
    changes: tuple[Change, ...],
    desired: Mapping[Address, Any],
    doc: StateDocument,
    values_live: Any,
    destroy: bool = False,
) -> tuple[OutputChange, ...]:
    """Each output's change: its value as the plan knows it (or unknown) against state's."""
    by_address = {c.address: c for c in changes if not c.deposed}
    values = PlannedValues(by_address, desired, doc, values_live)
    planned: list[OutputChange] = []
    for name in sorted(set(outputs) | set(doc.outputs)):
        prior = doc.outputs.get(name)
        before = _stored(prior)
        output = outputs.get(name)
        if output is None or destroy:
            if prior is not None:
                planned.append(OutputChange(name, Action.DELETE, before, None, sensitive=prior.sensitive))
            continue
        value, unknown = substitute(output.value, values.lookup, keep_type=True)
        after = None if unknown else (output_digest(value, doc.lineage) if output.sensitive else value)
        if prior is None:
            action = Action.CREATE
        elif unknown or after != before or prior.sensitive != output.sensitive:
            action = Action.UPDATE
        else:
            action = Action.NOOP
        planned.append(OutputChange(name, action, before, after, bool(unknown), output.sensitive))
    return tuple(planned)


def evaluate_output(output: Output, doc: StateDocument) -> Any:
    """An output's value from state as it is now; ReconcilerError when one of its references is
    not known (the object it reads is not ready)."""
    values = AppliedValues(doc, {})
    addresses = {Address.parse(k): None for k in doc.resources}

    def lookup(reference: Reference) -> Any:
        return attribute_value(reference, addresses, values.read)

    value, unknown = substitute(output.value, lookup, keep_type=True)
    if unknown:
        missing = sorted({r.text for r in references_in(output.value)})
        raise ReconcilerError(
            f"output {output.name}: {', '.join('${' + m + '}' for m in missing)} not known yet",
            hint="apply first; an instance reports its address once it is ready",
        )
    return value


def outputs_after_apply(outputs: Mapping[str, Output], doc: StateDocument) -> dict[str, OutputState]:
    """What state records for each output once apply ran; one not known yet is left out."""
    recorded: dict[str, OutputState] = {}
    for name in sorted(outputs):
        output = outputs[name]
        try:
            value = evaluate_output(output, doc)
        except ReconcilerError:
            continue
        if output.sensitive:
            recorded[name] = OutputState(
                type=value_type(value), sensitive=True, digest=output_digest(value, doc.lineage)
            )
        else:
            recorded[name] = OutputState(value=value, type=value_type(value))
    return recorded


def sensitive_value(output: Output | None, name: str, doc: StateDocument) -> Any:
    """A sensitive output's value, computed again from the configuration, if it is the applied one."""
    held = doc.outputs.get(name)
    if output is None or held is None or held.digest is None:
        raise ReconcilerError(
            f"output {name}: its value is not known here",
            hint="the configuration no longer declares it; apply records outputs again",
        )
    value = evaluate_output(output, doc)
    if output_digest(value, doc.lineage) != held.digest:
        raise ReconcilerError(
            f"output {name}: the configuration's value differs from the one last applied",
            hint="run apply to record it (or restore the variables it was applied with)",
        )
    return value
