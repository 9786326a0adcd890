"""`show -json` of state in Terraform's state JSON shape, so existing tools can read it.

`values.root_module.resources[]` carries each resource's desired and computed attributes
together in `values` (as Terraform's do) and `sensitive_values` marks what is hidden:
state keeps a sensitive value only as its salted digest, and the JSON shows null there.
"""

from __future__ import annotations

from typing import Any

from reconciler.model import Address
from reconciler.state.model import ResourceState, StateDocument
from reconciler.views.masking import hide_digests
from reconciler.views.outputs import outputs_json

STATE_FORMAT_VERSION = "1.0"


def resource_values(res: ResourceState) -> dict[str, Any]:
    """Desired attributes, then what the API reports (computed), then the id."""
    return {**res.attributes, **res.computed, "id": res.id}


def _resource_json(key: str, res: ResourceState, deposed: str | None = None) -> dict[str, Any]:
    address = Address.parse(key)
    values, marks = hide_digests(resource_values(res))
    entry: dict[str, Any] = {
        "address": key,
        "mode": "managed",
        "type": address.kind.value,
        "name": address.name,
    }
    if address.index is not None:
        entry["index"] = address.index
    if deposed is not None:
        entry["deposed"] = deposed
    entry.update(
        {
            "provider_name": res.provider,
            "schema_version": 0,
            "values": values,
            "sensitive_values": marks or {},
            "depends_on": list(res.depends_on),
            "status": res.status,
            "hourly_price": res.hourly_price,
        }
    )
    return entry


def state_to_json(doc: StateDocument, version: str) -> dict[str, Any]:
    resources = [
        _resource_json(key, doc.resources[key])
        for key in sorted(doc.resources, key=lambda k: Address.parse(k).sort_key())
    ]
    resources += [_resource_json(d.address, d, deposed=d.id) for d in doc.deposed]
    values: dict[str, Any] = {"root_module": {"resources": resources}}
    outputs = outputs_json(doc)
    if outputs:
        values["outputs"] = outputs
    return {
        "format_version": STATE_FORMAT_VERSION,
        "reconciler_version": version,
        "serial": doc.serial,
        "lineage": doc.lineage,
        "values": values,
    }
