"""`reconciler ssh` command lines and `ssh-config` entries, from state."""

from __future__ import annotations

import pytest

from reconciler.connect import ready_targets, ssh_command, ssh_config_text, ssh_target
from reconciler.errors import ReconcilerError
from reconciler.model import Address, Kind
from reconciler.state.model import ResourceState, StateDocument

KEY = Address(Kind.SSH_KEY, "deploy")
HEAD = Address(Kind.INSTANCE, "head")
W1 = Address(Kind.INSTANCE, "worker", 1)


def state() -> StateDocument:
    doc = StateDocument()
    doc.resources[str(KEY)] = ResourceState(provider="shadeform", kind="ssh_keys", id="k1")
    doc.resources[str(HEAD)] = ResourceState(
        provider="shadeform",
        kind="instances",
        id="h1",
        attributes={"name": "head", "ssh_key": str(KEY)},
        computed={"ip": "10.0.0.7", "ssh_user": "shadeform", "ssh_port": 2222},
    )
    doc.resources[str(W1)] = ResourceState(
        provider="forward", kind="instances", id="w1", status="pending", computed={"ssh_user": "ubuntu"}
    )
    return doc


def test_ssh_uses_user_port_address_and_the_key_file_path() -> None:
    target = ssh_target(state(), HEAD, {KEY: "/home/me/.ssh/deploy"})
    assert ssh_command(target, ("nvidia-smi", "-L")) == [
        "ssh", "-p", "2222", "-i", "/home/me/.ssh/deploy", "-o", "IdentitiesOnly=yes",
        "shadeform@10.0.0.7", "nvidia-smi", "-L",
    ]
    assert ssh_command(ssh_target(state(), HEAD, {})) == ["ssh", "-p", "2222", "shadeform@10.0.0.7"]


def test_ssh_refuses_what_is_not_a_ready_instance() -> None:
    with pytest.raises(ReconcilerError, match=r"instances.worker\[1\] is not ready to connect to: its status is pending"):
        ssh_target(state(), W1, {})
    doc = state()
    doc.resources[str(W1)].status = "active"
    with pytest.raises(ReconcilerError, match="reports no address for it yet"):
        ssh_target(doc, W1, {})
    with pytest.raises(ReconcilerError, match="not an instance"):
        ssh_target(doc, KEY, {})
    with pytest.raises(ReconcilerError, match="instances.gone is not in state") as caught:
        ssh_target(doc, Address(Kind.INSTANCE, "gone"), {})
    assert caught.value.hint is not None and "instances.head" in caught.value.hint


def test_ssh_config_lists_every_ready_instance() -> None:
    text = ssh_config_text("cluster", ready_targets(state(), {KEY: "/keys/deploy"}))
    assert "Host cluster-head\n  HostName 10.0.0.7\n  User shadeform\n  Port 2222\n" in text
    assert '  IdentityFile "/keys/deploy"\n  IdentitiesOnly yes\n' in text
    assert "worker" not in text
