"""The state document: what reconciler created, keyed by address, plus pending operations.

Read leniently (unknown fields kept), written strictly. Reading goes through
`reconciler.state.validation`, which refuses damaged documents and newer versions.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

STATE_VERSION = 1


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ResourceState(BaseModel):
    model_config = ConfigDict(extra="allow")

    provider: str
    kind: str
    id: str
    attributes: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    marker: str | None = None
    status: str = "active"
    hourly_price: float | None = None
    created_at: str | None = None
    # What the API reports and the configuration does not set (ip, ssh_user, ssh_port, ...):
    # refreshed from live, never compared with the configuration.
    computed: dict[str, Any] = Field(default_factory=dict)


class DeposedResource(ResourceState):
    """An old object of a create_before_destroy replacement, kept until it is deleted."""

    address: str


class PendingOperation(BaseModel):
    """A create or delete that was sent (or about to be) but not yet confirmed.

    Written durably before the API call, cleared after the answer is recorded. A run
    that finds one resolves it from live resources by marker before planning.
    """

    model_config = ConfigDict(extra="allow")

    op: Literal["create", "delete"]
    address: str
    provider: str
    kind: str
    marker: str
    name: str
    started_at: str = Field(default_factory=utc_now)
    id: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    hourly_price: float | None = None


class OutputState(BaseModel):
    """An output's value as the last apply left it; a sensitive one keeps only its digest."""

    model_config = ConfigDict(extra="allow")

    value: Any = None
    type: Any = "string"
    sensitive: bool = False
    digest: str | None = None


class StateDocument(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: int = STATE_VERSION
    serial: int = Field(default=0, ge=0)
    lineage: str = Field(default_factory=lambda: str(uuid.uuid4()))
    # Which configuration writes this state ({"name", "source"}), checked by the next run; kept
    # as read (any JSON) so an old or odd value is judged there, never a parse error here.
    configuration: Any = None
    resources: dict[str, ResourceState] = Field(default_factory=dict)
    deposed: list[DeposedResource] = Field(default_factory=list)
    pending: list[PendingOperation] = Field(default_factory=list)
    outputs: dict[str, OutputState] = Field(default_factory=dict)

    def to_json_text(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=False), indent=2, sort_keys=False) + "\n"

    def id_of(self, address: str) -> str | None:
        res = self.resources.get(address)
        return res.id if res else None
