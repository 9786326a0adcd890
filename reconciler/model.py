"""The shared vocabulary: addresses, resources, offerings, changes and plans.

Every layer speaks in these types; raw API JSON becomes a LiveResource or an Offering at
the provider boundary and nowhere else.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

HOURS_PER_MONTH = 730.0


class Kind(str, Enum):
    SSH_KEY = "ssh_keys"
    VOLUME = "volumes"
    INSTANCE = "instances"

    @property
    def singular(self) -> str:
        return {"ssh_keys": "ssh_key", "volumes": "volume", "instances": "instance"}[self.value]


# The attributes through which an instance refers to other resources, by the kind they name:
# `ssh_key` holds one address, `volumes` a list of addresses (provider ids only at the API).
REFERENCE_KEYS: dict[Kind, str] = {Kind.SSH_KEY: "ssh_key", Kind.VOLUME: "volumes"}
SSH_KEY_REFERENCE = REFERENCE_KEYS[Kind.SSH_KEY]
VOLUMES_REFERENCE = REFERENCE_KEYS[Kind.VOLUME]


def mounted_volumes(attributes: dict[str, Any]) -> list[str]:
    """The addresses of the volumes an instance's attributes mount (none when it mounts none)."""
    return list(attributes.get(VOLUMES_REFERENCE) or ())


def retarget_references(attributes: dict[str, Any], old: str, new: str) -> None:
    """Point every reference to address `old` in an instance's attributes at `new`, in place."""
    if attributes.get(SSH_KEY_REFERENCE) == old:
        attributes[SSH_KEY_REFERENCE] = new
    volumes = attributes.get(VOLUMES_REFERENCE)
    if isinstance(volumes, list):
        attributes[VOLUMES_REFERENCE] = [new if v == old else v for v in volumes]


# Creation order: keys and volumes before the instances that use them.
KIND_ORDER = (Kind.SSH_KEY, Kind.VOLUME, Kind.INSTANCE)

_ADDRESS_RE = re.compile(
    r'^(ssh_keys|volumes|instances)\.([A-Za-z0-9_][A-Za-z0-9_.-]*?)(?:\[(\d+|"[A-Za-z0-9_-]+")\])?$'
)


@dataclass(frozen=True, order=True)
class Address:
    """`kind.name`, `kind.name[i]` for resources with `count`, or `kind.name["forward"]` for
    an SSH key declared for several providers (one object per provider)."""

    kind: Kind
    name: str
    index: int | str | None = None

    def __str__(self) -> str:
        base = f"{self.kind.value}.{self.name}"
        if self.index is None:
            return base
        return f'{base}["{self.index}"]' if isinstance(self.index, str) else f"{base}[{self.index}]"

    @classmethod
    def parse(cls, text: str) -> Address:
        return _parse_address(text)

    @classmethod
    def _parse_uncached(cls, text: str) -> Address:
        match = _ADDRESS_RE.match(text.strip())
        if not match:
            raise ValueError(
                f"{text!r} is not a resource address (expected kind.name or kind.name[i], "
                "kind one of ssh_keys, volumes, instances)"
            )
        kind, name, index = match.groups()
        if index is None:
            return cls(Kind(kind), name)
        return cls(Kind(kind), name, index.strip('"') if index.startswith('"') else int(index))

    @property
    def base(self) -> Address:
        """The address without its count index (what `--target instances.x` names)."""
        return Address(self.kind, self.name)

    def sort_key(self) -> tuple[int, str, int, str]:
        if isinstance(self.index, str):
            return (KIND_ORDER.index(self.kind), self.name, -1, self.index)
        return (KIND_ORDER.index(self.kind), self.name, -1 if self.index is None else self.index, "")


@functools.lru_cache(maxsize=65536)
def _parse_address(text: str) -> Address:
    """Addresses are parsed many times per plan (state keys, dependencies); each text once."""
    return Address._parse_uncached(text)


class Status(str, Enum):
    """Provider statuses normalised to one set at the adapter edge."""

    PENDING = "pending"
    ACTIVE = "active"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"
    UNKNOWN = "unknown"


# Deleted, or on the way: an object in one of these no longer counts as live.
GONE_STATUSES = (Status.DELETING, Status.DELETED)

# State status of an instance that missed --create-timeout; the next plan replaces it if it
# is still not active (on_failure: replace).
CREATE_TIMED_OUT = "create_timeout"


class Action(str, Enum):
    CREATE = "create"
    DELETE = "delete"
    REPLACE = "replace"
    UPDATE = "update"
    NOOP = "no-op"


class ActionReason(str, Enum):
    """Why the planner chose a change's action, as plan JSON's `action_reason` names it.

    The planner sets it on each Change it makes (None where Terraform names no reason: a
    plain create or update, a delete asked for with `destroy`, an old object's delete);
    views show it. Like the prose reasons it is for display, never for decisions.
    """

    REPLACE_BECAUSE_TAINTED = "replace_because_tainted"  # in error, or never became active
    REPLACE_BY_REQUEST = "replace_by_request"  # --replace
    REPLACE_BECAUSE_CANNOT_UPDATE = "replace_because_cannot_update"
    DELETE_BECAUSE_NO_RESOURCE_CONFIG = "delete_because_no_resource_config"
    CREATE_BECAUSE_DELETED_OUTSIDE = "create_because_deleted_outside"


@dataclass(frozen=True)
class Lifecycle:
    prevent_destroy: bool = False
    create_before_destroy: bool = False
    ignore_changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class OfferingRequest:
    """Requirements for an instance that does not pin an exact offering."""

    gpu_type: str | tuple[str, ...] | None = None
    num_gpus: int | None = None
    max_hourly_price: float | None = None
    region: str | None = None
    cloud: str | None = None
    max_price_per_gpu_hour: float | None = None
    min_vram_per_gpu_gb: int | None = None
    min_vcpus: int | None = None
    min_memory_gb: int | None = None
    regions: tuple[str, ...] | None = None
    clouds: tuple[str, ...] | None = None
    exclude_regions: tuple[str, ...] | None = None
    exclude_clouds: tuple[str, ...] | None = None
    rental_type: str | None = None
    deployment_type: str | None = None
    providers: tuple[str, ...] | None = None  # the provider is chosen among these

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON data (lists, not tuples), as plans and state keep it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Resource:
    """One desired resource, as the configuration declares it.

    `attributes` is canonical JSON data; references to other resources are stored as
    address strings (`ssh_key: "ssh_keys.deploy"`) and resolved to provider ids at apply.
    """

    address: Address
    provider: str
    attributes: dict[str, Any]
    depends_on: tuple[Address, ...] = ()
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    sensitive: tuple[str, ...] = ()
    offering: OfferingRequest | None = None
    on_failure: str = "replace"
    references: tuple[str, ...] = ()  # `${kind.name.attr}` texts its attributes hold as placeholders
    computed: tuple[str, ...] = ()  # attributes its API reports (ip, ssh_port, ...)
    fallback_attempts: int = 1  # creates tried down the ranked offerings on capacity errors
    fallback_on_boot_failure: bool = False  # also move on when an instance ends in error at boot

    @property
    def providers(self) -> tuple[str, ...]:
        """Where it may be: its provider, or the providers its offering is chosen among."""
        if self.offering is not None and self.offering.providers:
            return self.offering.providers
        return (self.provider,)


@dataclass(frozen=True)
class Offering:
    """Something a provider sells: an instance type in a region, with its price.

    `pin` holds the attributes that select exactly this offering on create
    (Shadeform: cloud, region, shade_instance_type; Forward: offering_id).
    """

    provider: str
    id: str
    gpu_type: str
    num_gpus: int
    hourly_price: float
    region: str
    cloud: str
    available: bool
    pin: dict[str, Any]
    vram_per_gpu_gb: int | None = None
    instance_type: str | None = None
    vcpus: int | None = None
    memory_gb: int | None = None
    rental_type: str = "on_demand"
    deployment_type: str | None = None
    storage_gb: int | None = None
    interconnect: str | None = None
    boot_seconds: int | None = None  # the API's longest expected boot

    @property
    def price_per_gpu_hour(self) -> float:
        return self.hourly_price / self.num_gpus if self.num_gpus else self.hourly_price


@dataclass(frozen=True)
class VolumeOffering:
    """A volume type a provider sells in a region, used to price volumes.

    `id` is the API's offering id where it has one (Forward) and `"{cloud}:{region}"`
    otherwise (Shadeform).
    """

    provider: str
    id: str
    cloud: str
    region: str
    price_per_gb_hour: float
    fixed_size: bool = False
    supports_multi_mount: bool = False


@dataclass(frozen=True)
class LiveResource:
    """A resource as the provider reports it now.

    `attributes` uses the same names as a Resource's attributes for the fields the API
    reports back, so the planner can see drift. `marker` is the ownership marker
    reconciler put on it at create time, if any.
    """

    provider: str
    kind: Kind
    id: str
    name: str
    status: Status
    attributes: dict[str, Any] = field(default_factory=dict)
    marker: str | None = None
    hourly_price: float | None = None
    status_details: str | None = None
    api_status: str | None = None  # the API's own status word (e.g. pending_provider), for display
    computed: dict[str, Any] = field(default_factory=dict)
    spent: float | None = None  # dollars billed so far, where the API reports it

    @property
    def ready(self) -> bool:
        """Reachable: active, and (for an instance) with the address users connect to."""
        if self.status is not Status.ACTIVE:
            return False
        return self.kind is not Kind.INSTANCE or bool(self.computed.get("ip"))


@dataclass(frozen=True)
class CreatedResource:
    """What a provider returns from create: the id, plus whatever the answer carried."""

    id: str
    live: LiveResource | None = None


@dataclass(frozen=True)
class Candidate:
    """An offering a create may fall back to, as the plan ranked and showed it."""

    offering_id: str
    label: str
    hourly_price: float
    pin: dict[str, Any]
    provider: str | None = None  # None: the change's own provider (plans made before providers could vary)


@dataclass(frozen=True)
class Change:
    """One line of a plan.

    `candidates` is the head of the plan's ranked offerings, its choice first, that apply may
    go down when a create is refused for capacity (`fallback`); it never tries anything else.
    """

    address: Address
    action: Action
    provider: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reasons: tuple[str, ...] = ()
    depends_on: tuple[Address, ...] = ()
    replace_paths: tuple[str, ...] = ()
    id: str | None = None
    create_before_destroy: bool = False
    sensitive: tuple[str, ...] = ()
    hourly_before: float = 0.0
    hourly_after: float = 0.0
    marker: str | None = None
    deposed: str | None = None  # id of an old create_before_destroy object being deleted
    computed: tuple[str, ...] = ()  # attributes the API reports, known only after apply
    unknown: tuple[str, ...] = ()  # paths of `after` that hold references known only after apply
    candidates: tuple[Candidate, ...] = ()
    fallback_on_boot_failure: bool = False
    reason: ActionReason | None = None
    # `after` as state keeps it, each sensitive value the salted digest state holds for it:
    # set once by the planner for a change with sensitive values, and what views and saved
    # plans read. None where nothing is sensitive.
    masked_after: dict[str, Any] | None = None

    @property
    def destroys_data(self) -> bool:
        """A volume deleted or replaced: what is stored on it is lost."""
        return self.address.kind is Kind.VOLUME and self.action in (Action.DELETE, Action.REPLACE)


@dataclass(frozen=True)
class CostSummary:
    hourly_before: float
    hourly_after: float

    @property
    def hourly_delta(self) -> float:
        return self.hourly_after - self.hourly_before

    @property
    def monthly_delta(self) -> float:
        return self.hourly_delta * HOURS_PER_MONTH


@dataclass(frozen=True)
class Orphan:
    """A live resource carrying this state's marker that state does not track."""

    provider: str
    kind: Kind
    id: str
    name: str
    address: str | None
    hourly_price: float | None


@dataclass(frozen=True)
class Output:
    """A named value for people and scripts (`outputs:`), as Terraform's outputs.

    `value` may hold reference placeholders (see reconciler.references); a sensitive
    output's value is never written to state, plan or output unless asked for by name.
    """

    name: str
    value: Any
    description: str | None = None
    sensitive: bool = False
    depends_on: tuple[Address, ...] = ()


@dataclass(frozen=True)
class OutputChange:
    """How an output's value changes with a plan. `after_unknown`: known only after apply.

    A sensitive output's `before` and `after` hold digests, never values.
    """

    name: str
    action: Action
    before: Any
    after: Any
    after_unknown: bool = False
    sensitive: bool = False


@dataclass(frozen=True)
class ForeignObject:
    """A live object under a name a new state is about to create, owned by another state.

    Its marker names that state's lineage: the same configuration is probably using a
    second state by mistake, and applying would run everything twice.
    """

    address: str  # the address whose create would duplicate it
    provider: str
    kind: Kind
    id: str
    name: str
    lineage: str  # the other state's lineage prefix, as its marker carries it
    hourly_price: float | None


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    state_serial: int
    state_lineage: str
    cost: CostSummary
    notes: tuple[str, ...] = ()
    orphans: tuple[Orphan, ...] = ()
    outputs: tuple[OutputChange, ...] = ()
    foreign: tuple[ForeignObject, ...] = ()

    @property
    def has_changes(self) -> bool:
        """Resource changes, or output values to record (apply saves them, as Terraform does)."""
        return any(c.action is not Action.NOOP for c in self.changes) or any(
            o.action is not Action.NOOP for o in self.outputs
        )

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action is action)


MASK_PREFIX = "sha256:"


def get_path(data: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (`envs.HF_TOKEN`), or None."""
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def mask_sensitive(attributes: dict[str, Any], paths: tuple[str, ...], salt: str) -> dict[str, Any]:
    """A copy with each sensitive value replaced by a salted digest.

    State keeps the digest, never the value, yet a changed secret still shows as a change.
    """
    if not paths:
        return attributes
    masked = copy.deepcopy(attributes)
    for path in paths:
        parts = path.split(".")
        node: Any = masked
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts[-1] in node:
            value = node[parts[-1]]
            if isinstance(value, str) and value.startswith(MASK_PREFIX):
                continue
            digest = hashlib.sha256(f"{salt}\0{value}".encode()).hexdigest()[:32]
            node[parts[-1]] = MASK_PREFIX + digest
    return masked


def new_marker(lineage: str) -> str:
    """An ownership marker: this state's lineage prefix plus a per-create nonce."""
    return f"rc-{lineage.replace('-', '')[:8]}-{secrets.token_hex(8)}"


def marker_lineage(marker: str | None) -> str | None:
    """The lineage prefix an ownership marker carries (`rc-<lineage8>-<nonce>`), if it is one."""
    parts = (marker or "").split("-")
    return parts[1] if len(parts) == 3 and parts[0] == "rc" and parts[1] else None


def marker_belongs_to(marker: str | None, lineage: str) -> bool:
    return bool(marker) and str(marker).startswith(f"rc-{lineage.replace('-', '')[:8]}-")
