"""Ready means active with an address: the applier waits for the ip, records what the API
reports, and only then starts what refers to it."""

from __future__ import annotations

import builtins
from typing import Any

from reconciler.applier import Applier, ApplyOptions
from reconciler.model import (
    Action,
    Address,
    Change,
    CreatedResource,
    Kind,
    LiveResource,
    Offering,
    Status,
    VolumeOffering,
)
from reconciler.references import parse_reference, placeholder
from reconciler.state.ledger import StateLedger
from reconciler.state.model import StateDocument

HEAD = Address(Kind.INSTANCE, "head")
WORKER = Address(Kind.INSTANCE, "worker")


class MemoryBackend:
    def __init__(self) -> None:
        self.written: list[StateDocument] = []

    def write(self, doc: StateDocument, force: bool = False) -> None:
        self.written.append(doc.model_copy(deep=True))


class BootingProvider:
    """Instances answer active without an ip for `silent_polls` lists, then report one."""

    name = "shadeform"
    list_consistency_seconds = 0.0

    def __init__(self, silent_polls: int) -> None:
        self.silent_polls = silent_polls
        self.instances: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []

    def updatable(self, kind: Kind) -> frozenset[str]:
        return frozenset()

    def _live(self, id: str) -> LiveResource:
        info = self.instances[id]
        info["polls"] += 1
        computed = {"id": id, "ssh_user": "ubuntu", "ssh_port": 22, "status": "active"}
        if info["polls"] > self.silent_polls:
            computed["ip"] = info["ip"]
        return LiveResource("shadeform", Kind.INSTANCE, id, info["name"], Status.ACTIVE, computed=computed)

    async def list(self, kind: Kind) -> builtins.list[LiveResource]:
        return [self._live(id) for id in self.instances]

    async def get(self, kind: Kind, id: str) -> LiveResource | None:
        return self._live(id) if id in self.instances else None

    async def create(self, kind: Kind, spec: dict[str, Any], marker: str) -> CreatedResource:
        id = f"i-{len(self.instances) + 1}"
        self.instances[id] = {"name": spec["name"], "ip": f"10.0.0.{len(self.instances) + 1}", "polls": 0}
        self.created.append(spec)
        return CreatedResource(id)

    async def delete(self, kind: Kind, id: str) -> None:
        self.instances.pop(id, None)

    async def update(self, kind: Kind, id: str, changes: dict[str, Any], marker: str) -> None:
        return None

    async def offerings(self) -> builtins.list[Offering]:
        return []

    async def volume_offerings(self) -> builtins.list[VolumeOffering]:
        return []

    async def aclose(self) -> None:
        return None


def changes() -> tuple[Change, ...]:
    ip = placeholder(parse_reference("instances.head.ip"))  # type: ignore[arg-type]
    head = Change(HEAD, Action.CREATE, "shadeform", None, {"name": "head"}, computed=("ip",))
    worker = Change(
        WORKER,
        Action.CREATE,
        "shadeform",
        None,
        {"name": "worker", "envs": {"MASTER_ADDR": ip}},
        depends_on=(HEAD,),
        unknown=("envs.MASTER_ADDR",),
    )
    return head, worker


async def test_the_head_is_ready_only_with_an_ip_and_the_worker_gets_it() -> None:
    provider = BootingProvider(silent_polls=3)
    doc = StateDocument()
    ledger = StateLedger(MemoryBackend(), doc)  # type: ignore[arg-type]
    result = await Applier(changes(), ledger, {"shadeform": provider}, ApplyOptions(poll_interval=0.001)).run()
    assert result.ok, result.failed
    head = doc.resources["instances.head"]
    assert head.status == "active" and head.computed["ip"] == "10.0.0.1"
    assert head.computed["ssh_user"] == "ubuntu"
    # The worker was created only once the head reported its address, and with it.
    assert provider.created[1]["envs"] == {"MASTER_ADDR": "10.0.0.1"}
    assert provider.instances["i-1"]["polls"] > 3
    assert doc.resources["instances.worker"].attributes["envs"] == {"MASTER_ADDR": "10.0.0.1"}


async def test_an_instance_that_never_reports_an_ip_times_out_and_its_dependent_waits() -> None:
    provider = BootingProvider(silent_polls=10**9)
    doc = StateDocument()
    ledger = StateLedger(MemoryBackend(), doc)  # type: ignore[arg-type]
    options = ApplyOptions(poll_interval=0.001, create_timeout=5.0)
    ticks = iter(range(10**6))  # a clock that moves one second per reading: no wall-clock timing
    result = await Applier(
        changes(), ledger, {"shadeform": provider}, options, clock=lambda: float(next(ticks))
    ).run()
    assert [key for key, _ in result.failed] == ["create:instances.head"]
    assert "no ip reported yet" in result.failed[0][1]
    assert result.not_started == ["create:instances.worker"]
    assert len(provider.created) == 1
    assert doc.resources["instances.head"].status == "create_timeout"
