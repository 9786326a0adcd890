"""Reaching instances: the `ssh` command line for one, OpenSSH `Host` entries for all.

Everything comes from state (the address, user and port the API reported once the
instance was ready) and from the configuration's SSH key blocks, which may name a local
`private_key_file`: only that path is passed on to `ssh -i`; the key itself is never read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.errors import ReconcilerError
from reconciler.model import SSH_KEY_REFERENCE, Address, Kind, Status
from reconciler.state.model import ResourceState, StateDocument

DEFAULT_SSH_PORT = 22


@dataclass(frozen=True)
class SshTarget:
    address: Address
    host: str
    user: str | None
    port: int
    identity_file: str | None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def host_alias(config_name: str, address: Address) -> str:
    """`cluster-worker-0` for instances.worker[0] of configuration `cluster`."""
    suffix = "" if address.index is None else f"-{address.index}"
    return f"{config_name}-{address.name}{suffix}"


def _not_ready_reason(held: ResourceState) -> str | None:
    if held.status != Status.ACTIVE.value:
        return f"its status is {held.status}"
    if not held.computed.get("ip"):
        return "the API reports no address for it yet"
    return None


def _target(address: Address, held: ResourceState, private_keys: Mapping[Address, str]) -> SshTarget:
    key_address = held.attributes.get(SSH_KEY_REFERENCE)
    identity = private_keys.get(Address.parse(key_address)) if isinstance(key_address, str) else None
    port = held.computed.get("ssh_port")
    return SshTarget(
        address=address,
        host=str(held.computed["ip"]),
        user=str(held.computed["ssh_user"]) if held.computed.get("ssh_user") else None,
        port=int(port) if isinstance(port, int | str) and str(port).isdigit() else DEFAULT_SSH_PORT,
        identity_file=identity,
    )


def ssh_target(doc: StateDocument, address: Address, private_keys: Mapping[Address, str]) -> SshTarget:
    """Where `reconciler ssh ADDRESS` connects; refused for what is not a ready instance."""
    if address.kind is not Kind.INSTANCE:
        raise ReconcilerError(f"{address} is not an instance; only instances can be reached over SSH")
    held = doc.resources.get(str(address))
    if held is None:
        known = sorted((k for k in doc.resources if k.startswith("instances.")), key=lambda k: Address.parse(k).sort_key())
        raise ReconcilerError(
            f"{address} is not in state",
            hint=("instances in state: " + ", ".join(known)) if known else "run `reconciler apply` first",
        )
    reason = _not_ready_reason(held)
    if reason is not None:
        raise ReconcilerError(
            f"{address} is not ready to connect to: {reason}",
            hint="wait for `reconciler apply` to finish, or run `reconciler refresh` and try again",
        )
    return _target(address, held, private_keys)


def ready_targets(doc: StateDocument, private_keys: Mapping[Address, str]) -> list[SshTarget]:
    targets = []
    for key in sorted(doc.resources, key=lambda k: Address.parse(k).sort_key()):
        address = Address.parse(key)
        held = doc.resources[key]
        if address.kind is Kind.INSTANCE and _not_ready_reason(held) is None:
            targets.append(_target(address, held, private_keys))
    return targets


def ssh_command(target: SshTarget, command: Sequence[str] = ()) -> list[str]:
    """The system `ssh` invocation: port, key (when the configuration names one), user@host."""
    argv = ["ssh", "-p", str(target.port)]
    if target.identity_file:
        argv += ["-i", target.identity_file, "-o", "IdentitiesOnly=yes"]
    return [*argv, target.destination, *command]


def ssh_config_text(config_name: str, targets: Sequence[SshTarget]) -> str:
    """OpenSSH `Host` entries, one per ready instance, for `Include` from ~/.ssh/config."""
    lines = [f"# Written by `reconciler ssh-config` for configuration {config_name}."]
    for target in targets:
        lines += ["", f"# {target.address}", f"Host {host_alias(config_name, target.address)}"]
        lines.append(f"  HostName {target.host}")
        if target.user:
            lines.append(f"  User {target.user}")
        lines.append(f"  Port {target.port}")
        if target.identity_file:
            lines += [f'  IdentityFile "{target.identity_file}"', "  IdentitiesOnly yes"]
    return "\n".join(lines) + "\n"
