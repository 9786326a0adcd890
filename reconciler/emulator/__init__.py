"""The built-in emulator of the Shadeform and Forward Compute APIs.

Faithful to the seeds (paths, fields, status codes, error bodies), keyed by API key
(separate tenants), with statuses computed from timestamps on an injectable clock, a
ledger of everything ever created, sandbox-file persistence and deterministic faults.
It is reconciler's default endpoint (`EmbeddedCloud`, in-process over httpx) and runs
as a server (`reconciler emulator serve`).
"""

from reconciler.emulator.clock import Clock, ManualClock, SystemClock
from reconciler.emulator.embedded import EmbeddedCloud, EmbeddedTransport
from reconciler.emulator.faults import FaultConfig, FaultRule, FaultSpecError, parse_fault_spec
from reconciler.emulator.records import tenant_id
from reconciler.emulator.runtime import EmulatorRuntime
from reconciler.emulator.server import build_server_app
from reconciler.emulator.storage import SandboxError
from reconciler.emulator.validation import example_public_key
from reconciler.emulator.world import LedgerEntry, World

__all__ = [
    "Clock",
    "EmbeddedCloud",
    "EmbeddedTransport",
    "EmulatorRuntime",
    "FaultConfig",
    "FaultRule",
    "FaultSpecError",
    "LedgerEntry",
    "ManualClock",
    "SandboxError",
    "SystemClock",
    "World",
    "build_server_app",
    "example_public_key",
    "parse_fault_spec",
    "tenant_id",
]
