"""Expiry: `expires_after`, `expires_at` and `max_spend` of an instance.

Pure, like the planner. The deadline is fixed once and kept in state under `expiry`, so
later plans do not move it: `expires_after` counts from the create (from the plan that
creates the instance, until state records when it was created). On Shadeform the deadline and spend become `auto_delete` (updated in place),
so the provider deletes the instance even if reconciler never runs again; elsewhere the
planner plans the deletion once the deadline or the spend is reached.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from reconciler.provider_spec import find_provider
from reconciler.state.model import ResourceState
from reconciler.timestamps import parse_timestamp

EXPIRY_KEY = "expiry"
_DURATION = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta | None:
    """`90m`, `8h`, `2d`; None for anything else."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        return None
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def with_deadline(
    provider: str, attrs: dict[str, Any], prior: ResourceState | None, now: datetime | None
) -> dict[str, Any]:
    """Attributes with the expiry's deadline fixed (and, on Shadeform, `auto_delete` set)."""
    wanted = attrs.get(EXPIRY_KEY)
    if not isinstance(wanted, dict):
        return attrs
    expiry = dict(wanted)
    held = prior.attributes.get(EXPIRY_KEY) if prior is not None else None
    if "at" in expiry:
        expiry["deadline"] = expiry["at"]
    elif isinstance(held, dict) and held.get("after") == expiry.get("after") and held.get("deadline"):
        expiry["deadline"] = held["deadline"]
    elif (duration := parse_duration(str(expiry.get("after")))) is not None:
        # Counted from the create: from state's record of it, else from this plan.
        created = parse_timestamp(prior.created_at) if prior is not None and prior.created_at else None
        start = created or now
        if start is not None:
            expiry["deadline"] = _iso(start + duration)
    result = {**attrs, EXPIRY_KEY: expiry}
    spec = find_provider(provider)
    if spec is not None and spec.enforces_expiry:
        threshold = {"date_threshold": expiry.get("deadline"), "spend_threshold": expiry.get("max_spend")}
        if any(v is not None for v in threshold.values()):
            result["auto_delete"] = {k: v for k, v in threshold.items() if v is not None}
    return result


def expired(attrs: dict[str, Any], prior: ResourceState | None, now: datetime | None) -> str | None:
    """Why the instance is past its expiry now (None if it is not, or has none)."""
    expiry = attrs.get(EXPIRY_KEY)
    if now is None or not isinstance(expiry, dict):
        return None
    deadline = parse_timestamp(expiry.get("deadline"))
    if deadline is not None and now >= deadline:
        given = f"expires_at {expiry['at']}" if "at" in expiry else f"expires_after: {expiry.get('after')}"
        return f"expired at {expiry['deadline']} ({given})"
    max_spend = expiry.get("max_spend")
    if prior is None or max_spend is None or not prior.hourly_price or not prior.created_at:
        return None
    started = parse_timestamp(prior.created_at)
    if started is None:
        return None
    spent = (now - started).total_seconds() / 3600 * prior.hourly_price
    if spent >= float(max_spend):
        return f"spent ${spent:,.2f} of max_spend ${float(max_spend):,.2f}"
    return None
