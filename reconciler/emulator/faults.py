"""Deterministic fault injection, switchable per API and operation.

Spec grammar (rules separated by `;`, whitespace ignored):

    spec   := rule (";" rule)*
    rule   := target "=" fault
    target := api "." [kind "."] verb        each part may be "*"
    fault  := name [":" value] ["@" param ("," param)*]
    param  := key "=" number

- api: `shadeform`, `forward` (any registered provider's emulated API).
- kind: `instances`, `volumes`, `ssh_keys`, `instance_types`, `volume_types`,
  `compute_offerings`, `volume_offerings`, `models` (what the APIs' endpoints serve; omitted:
  any kind).
- verb: `list`, `get`, `create`, `delete`, `update`, `restart`, `setdefault`.

Faults. For those marked (p), the value is the probability a matching call is hit
(default 1.0), drawn from one `random.Random(seed)`; `@every=N` hits every Nth matching
call instead, and `@times=N` stops after N hits, so "fail the 3rd create once" is
`shadeform.instances.create=status_503@every=3,times=1`.

- `status_NNN` (p): answer NNN (400-599) with the API's error body; nothing applied.
- `rate_limit` (p): 429 with `Retry-After` (`@retry_after=S`, default 1); nothing applied.
- `timeout` (p): never answered, nothing applied. A server holds the request until the
  client gives up or `@seconds=S` (default 30) pass, then drops the connection;
  in-process the transport raises `httpx.ReadTimeout` at once.
- `lost_response` (p): the request IS applied, then the connection drops without an
  answer (`httpx.RemoteProtocolError`).
- `capacity` (p): instance or volume create refused for lack of capacity.
- `boot_failure` (p): a created instance ends in `error` instead of `active`.
- `stuck_pending` (p): a created instance stays pending forever.
- `latency:S`: every matching call waits S seconds first.
- `lag:S`: Forward cached reads (lists, gets without refresh) lag S more seconds.
- `slow_delete:S`: a deleted instance stays `deleting` for S seconds.

Example:
`shadeform.create=lost_response:0.5;forward.list=lag:5;*.*=status_503:0.1;shadeform.*=rate_limit@retry_after=1`.
Several rules may hit one call: latencies add up, lags add up, the first hit refusal
(status, rate_limit, timeout) in spec order decides the answer.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from reconciler.provider_spec import provider_specs

MUTATING_VERBS = frozenset({"create", "delete", "update", "restart", "setdefault"})
READ_VERBS = frozenset({"list", "get"})
VERBS = MUTATING_VERBS | READ_VERBS


@dataclass(frozen=True)
class Operation:
    """One API operation, the unit that faults target and statistics count."""

    api: str
    kind: str
    verb: str

    @property
    def key(self) -> str:
        return f"{self.api}.{self.kind}.{self.verb}"

    @property
    def mutating(self) -> bool:
        return self.verb in MUTATING_VERBS


def api_names() -> tuple[str, ...]:
    """Every emulated API: the registered providers that have one."""
    return tuple(name for name, spec in provider_specs().items() if spec.emulator is not None)


def operations() -> tuple[Operation, ...]:
    """Every operation of every emulated API: what its endpoints serve."""
    return tuple(
        op for spec in provider_specs().values() if spec.emulator is not None for op in spec.emulator().operations
    )


def _cached_lists(api: str) -> bool:
    spec = provider_specs().get(api)
    return spec is not None and spec.emulator is not None and spec.emulator().cached_lists


class FaultSpecError(ValueError):
    """A fault spec that does not parse; the message says which rule and why."""


class FaultKind(str, Enum):
    STATUS = "status"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    LOST_RESPONSE = "lost_response"
    CAPACITY = "capacity"
    BOOT_FAILURE = "boot_failure"
    STUCK_PENDING = "stuck_pending"
    LATENCY = "latency"
    LAG = "lag"
    SLOW_DELETE = "slow_delete"


DURATION_FAULTS = frozenset({FaultKind.LATENCY, FaultKind.LAG, FaultKind.SLOW_DELETE})
REFUSALS = frozenset({FaultKind.STATUS, FaultKind.RATE_LIMIT, FaultKind.TIMEOUT})
_CACHED_KINDS = frozenset({"instances", "volumes", "ssh_keys"})


def fault_applies(fault: FaultKind, op: Operation) -> bool:
    """Whether a fault means anything for an operation (capacity only on creates, ...)."""
    if fault is FaultKind.CAPACITY:
        return op.verb == "create" and op.kind in ("instances", "volumes")
    if fault in (FaultKind.BOOT_FAILURE, FaultKind.STUCK_PENDING):
        return op.verb == "create" and op.kind == "instances"
    if fault is FaultKind.SLOW_DELETE:
        return op.verb == "delete" and op.kind == "instances"
    if fault is FaultKind.LAG:
        return op.verb in READ_VERBS and op.kind in _CACHED_KINDS and _cached_lists(op.api)
    return True


class FaultRule(BaseModel):
    model_config = ConfigDict(frozen=True)

    api: str = "*"
    kind: str = "*"
    verb: str = "*"
    fault: FaultKind
    status: int | None = None
    value: float | None = None
    every: int | None = Field(default=None, ge=1)
    times: int | None = Field(default=None, ge=1)
    retry_after: float = Field(default=1.0, ge=0)
    seconds: float = Field(default=30.0, gt=0)

    def matches(self, op: Operation) -> bool:
        return (
            self.api in ("*", op.api)
            and self.kind in ("*", op.kind)
            and self.verb in ("*", op.verb)
            and fault_applies(self.fault, op)
        )

    @property
    def probability(self) -> float:
        return 1.0 if self.value is None else self.value

    def to_spec(self) -> str:
        target = f"{self.api}.{self.verb}" if self.kind == "*" else f"{self.api}.{self.kind}.{self.verb}"
        name = f"status_{self.status}" if self.fault is FaultKind.STATUS else self.fault.value
        text = f"{target}={name}"
        if self.value is not None:
            text += f":{self.value:g}"
        params = []
        if self.every is not None:
            params.append(f"every={self.every}")
        if self.times is not None:
            params.append(f"times={self.times}")
        if self.fault is FaultKind.RATE_LIMIT:
            params.append(f"retry_after={self.retry_after:g}")
        if self.fault is FaultKind.TIMEOUT:
            params.append(f"seconds={self.seconds:g}")
        return text + ("@" + ",".join(params) if params else "")


class FaultConfig(BaseModel):
    """A set of fault rules and the seed their probabilities are drawn with."""

    rules: list[FaultRule] = Field(default_factory=list)
    seed: int = 0

    @classmethod
    def parse(cls, spec: str | None, seed: int = 0) -> FaultConfig:
        return cls(rules=parse_fault_spec(spec or ""), seed=seed)

    def to_spec(self) -> str:
        return ";".join(rule.to_spec() for rule in self.rules)


_PARAMS = {
    "every": frozenset(FaultKind) - DURATION_FAULTS,
    "times": frozenset(FaultKind) - DURATION_FAULTS,
    "retry_after": frozenset({FaultKind.RATE_LIMIT}),
    "seconds": frozenset({FaultKind.TIMEOUT}),
}
_RULE_RE = re.compile(r"^(?P<target>[^=]+)=(?P<name>[a-z_0-9]+)(?::(?P<value>[^@]+))?(?:@(?P<params>.+))?$")


def parse_fault_spec(spec: str) -> list[FaultRule]:
    """Parse the compact spec string (grammar in the module docstring)."""
    rules = []
    for raw in spec.split(";"):
        text = "".join(raw.split())
        if text:
            rules.append(_parse_rule(text))
    return rules


def _parse_rule(text: str) -> FaultRule:
    match = _RULE_RE.match(text)
    if not match:
        raise FaultSpecError(f"fault rule {text!r}: expected api.[kind.]verb=fault[:value][@key=number,...]")
    api, kind, verb = _parse_target(text, match["target"])
    fault, status = _parse_name(text, match["name"])
    value = _number(text, "value", match["value"]) if match["value"] is not None else None
    if fault in DURATION_FAULTS:
        if value is None or value < 0:
            raise FaultSpecError(
                f"fault rule {text!r}: {fault.value} needs a duration in seconds, e.g. {fault.value}:2"
            )
    elif value is not None and not 0 <= value <= 1:
        raise FaultSpecError(f"fault rule {text!r}: probability must be between 0 and 1, got {value:g}")
    params: dict[str, float] = {}
    if match["params"]:
        for item in match["params"].split(","):
            key, sep, number = item.partition("=")
            if not sep or key not in _PARAMS:
                raise FaultSpecError(
                    f"fault rule {text!r}: unknown parameter {item!r} (known: {', '.join(_PARAMS)})"
                )
            if fault not in _PARAMS[key]:
                raise FaultSpecError(f"fault rule {text!r}: {key} does not apply to {fault.value}")
            params[key] = _number(text, key, number)
    for key in ("every", "times"):
        if key in params and (params[key] < 1 or params[key] != int(params[key])):
            raise FaultSpecError(f"fault rule {text!r}: {key} must be a whole number of calls, at least 1")
    rule = FaultRule(
        api=api,
        kind=kind,
        verb=verb,
        fault=fault,
        status=status,
        value=value,
        every=int(params["every"]) if "every" in params else None,
        times=int(params["times"]) if "times" in params else None,
        retry_after=params.get("retry_after", 1.0),
        seconds=params.get("seconds", 30.0),
    )
    if not any(rule.matches(op) for op in operations()):
        raise FaultSpecError(f"fault rule {text!r}: {fault.value} can never apply to {match['target']}")
    return rule


def _parse_target(text: str, target: str) -> tuple[str, str, str]:
    parts = target.split(".")
    if len(parts) == 2:
        api, kind, verb = parts[0], "*", parts[1]
    elif len(parts) == 3:
        api, kind, verb = parts
    else:
        raise FaultSpecError(f"fault rule {text!r}: target must be api.verb or api.kind.verb")
    apis = api_names()
    if api not in ("*", *apis):
        raise FaultSpecError(f"fault rule {text!r}: unknown api {api!r} ({', '.join(apis)} or *)")
    kinds = {op.kind for op in operations()}
    if kind != "*" and kind not in kinds:
        raise FaultSpecError(
            f"fault rule {text!r}: unknown kind {kind!r} (one of {', '.join(sorted(kinds))})"
        )
    if verb != "*" and verb not in VERBS:
        raise FaultSpecError(
            f"fault rule {text!r}: unknown verb {verb!r} (one of {', '.join(sorted(VERBS))})"
        )
    return api, kind, verb


def _parse_name(text: str, name: str) -> tuple[FaultKind, int | None]:
    if name.startswith("status_"):
        code = name.removeprefix("status_")
        if not code.isdigit() or not 400 <= int(code) <= 599:
            raise FaultSpecError(f"fault rule {text!r}: status fault must be status_400 .. status_599")
        return FaultKind.STATUS, int(code)
    try:
        fault = FaultKind(name)
    except ValueError:
        known = ", ".join(["status_NNN"] + [k.value for k in FaultKind if k is not FaultKind.STATUS])
        raise FaultSpecError(f"fault rule {text!r}: unknown fault {name!r} (one of {known})") from None
    if fault is FaultKind.STATUS:
        raise FaultSpecError(f"fault rule {text!r}: write status_NNN, e.g. status_503")
    return fault, None


def _number(text: str, what: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise FaultSpecError(f"fault rule {text!r}: {what} {raw!r} is not a number") from None


@dataclass
class Refusal:
    """How a call is refused before anything is applied."""

    fault: FaultKind
    status: int = 0
    retry_after: float = 0.0
    hold_seconds: float = 0.0


@dataclass
class FaultDecision:
    """Everything the faults decided for one call."""

    latency: float = 0.0
    lag: float = 0.0
    refusal: Refusal | None = None
    lost_response: bool = False
    capacity: bool = False
    boot_failure: bool = False
    stuck_pending: bool = False
    slow_delete: float | None = None


class FaultInjector:
    """Applies a FaultConfig call by call; counters and the random stream restart on configure."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        self.config = config
        self._random = random.Random(config.seed)
        self._matched = [0] * len(config.rules)
        self._hits = [0] * len(config.rules)

    def decide(self, op: Operation) -> FaultDecision:
        decision = FaultDecision()
        for index, rule in enumerate(self.config.rules):
            if not rule.matches(op):
                continue
            self._matched[index] += 1
            if rule.fault in DURATION_FAULTS:
                self._apply_duration(rule, decision)
                continue
            if not self._fires(index, rule):
                continue
            self._hits[index] += 1
            self._apply_hit(rule, decision)
        return decision

    def _fires(self, index: int, rule: FaultRule) -> bool:
        if rule.times is not None and self._hits[index] >= rule.times:
            return False
        if rule.every is not None:
            return self._matched[index] % rule.every == 0
        probability = rule.probability
        if probability >= 1:
            return True
        if probability <= 0:
            return False
        return self._random.random() < probability

    @staticmethod
    def _apply_duration(rule: FaultRule, decision: FaultDecision) -> None:
        seconds = rule.value or 0.0
        if rule.fault is FaultKind.LATENCY:
            decision.latency += seconds
        elif rule.fault is FaultKind.LAG:
            decision.lag += seconds
        else:
            decision.slow_delete = max(decision.slow_delete or 0.0, seconds)

    @staticmethod
    def _apply_hit(rule: FaultRule, decision: FaultDecision) -> None:
        if rule.fault in REFUSALS:
            if decision.refusal is None:
                decision.refusal = Refusal(
                    fault=rule.fault,
                    status=rule.status or (429 if rule.fault is FaultKind.RATE_LIMIT else 0),
                    retry_after=rule.retry_after,
                    hold_seconds=rule.seconds,
                )
        elif rule.fault is FaultKind.LOST_RESPONSE:
            decision.lost_response = True
        elif rule.fault is FaultKind.CAPACITY:
            decision.capacity = True
        elif rule.fault is FaultKind.BOOT_FAILURE:
            decision.boot_failure = True
        elif rule.fault is FaultKind.STUCK_PENDING:
            decision.stuck_pending = True

    def counters(self) -> list[dict[str, object]]:
        """Per rule: how many calls it matched and how many it hit."""
        return [
            {"rule": rule.to_spec(), "matched": self._matched[i], "hits": self._hits[i]}
            for i, rule in enumerate(self.config.rules)
        ]
