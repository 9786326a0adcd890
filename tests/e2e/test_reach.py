"""Reaching what apply created, on both providers, as a user does from the command line:
computed attributes in state and `show`, references between instances (a head and its
workers), outputs, saved plans with unknown values, `reconciler ssh` and `ssh-config`.

Runs start from the directory above the project (relative `-f`) or elsewhere (absolute
`-f`). `ssh` is a stand-in on PATH that records its arguments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from lifecycle_support import Project, live_names, run_cli

pytest_plugins = ["lifecycle_support"]

SECRET = "tok-3f9a1c7e5b"
PRIVATE_KEY_TEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-0d1e2f\n-----END OPENSSH PRIVATE KEY-----\n"

HEAD_PLACEMENT = {
    "shadeform": "    cloud: lambdalabs\n    region: us-east-1\n    shade_instance_type: A6000\n",
    "forward": "    offering: {gpu_type: H100}\n",
}


def cluster_config(provider: str) -> str:
    placement = HEAD_PLACEMENT[provider]
    return f"""
variables:
  token: {{default: "", sensitive: true}}
ssh_keys:
  - name: deploy
    provider: {provider}
    public_key: ${{file:deploy.pub}}
    private_key_file: keys/deploy
instances:
  - name: head
    provider: {provider}
{placement}    ssh_key: deploy
  - name: worker
    count: 2
    provider: {provider}
{placement}    ssh_key: deploy
    envs:
      MASTER_ADDR: "${{instances.head.ip}}"
      MASTER_URL: "tcp://${{instances.head.ip}}:${{instances.head.ssh_port}}"
outputs:
  head_ip:
    value: ${{instances.head.ip}}
    description: where the workers find the head
  connect:
    value: "ssh -p ${{instances.head.ssh_port}} ${{instances.head.ssh_user}}@${{instances.head.ip}}"
  worker_ips:
    value: ${{instances.worker[*].ip}}
  token:
    value: ${{var.token}}
    sensitive: true
"""


@pytest.fixture(params=["shadeform", "forward"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Project:
    project = Project.create(tmp_path, "cluster", cluster_config(request.param))
    (project.root / "keys").mkdir()
    (project.root / "keys" / "deploy").write_text(PRIVATE_KEY_TEXT, encoding="utf-8")
    project.env["RECONCILER_VAR_token"] = SECRET
    return project


def outside(project: Project, *args: str, expect: int | None = 0) -> str:
    """Run from the directory above the project with a relative -f, as in a CI checkout."""
    result = run_cli((*args, "-f", project.name), project.root.parent, env=project.env, expect=expect)
    assert SECRET not in result.output, result.describe()
    assert "not-a-real-key" not in result.output
    return result.stdout


def computed(project: Project, address: str) -> dict[str, object]:
    return dict(project.state()["resources"][address]["computed"])


def test_a_saved_plan_with_unknowns_applies_and_outputs_reach_scripts(cluster: Project) -> None:
    planned = outside(cluster, "plan", "-out", "cluster/first.bin")
    assert '"MASTER_ADDR" = (known after apply)' in planned
    assert "+ ip " in planned and "(known after apply)" in planned
    assert "Changes to Outputs:" in planned and "+ head_ip    = (known after apply)" in planned
    assert "+ token      = (sensitive)" in planned
    plan_json = json.loads(outside(cluster, "show", "-json", "cluster/first.bin"))
    assert plan_json["output_changes"]["head_ip"]["after_unknown"] is True

    applied = outside(cluster, "apply", "cluster/first.bin")
    head_ip = str(computed(cluster, "instances.head")["ip"])
    head_port = computed(cluster, "instances.head")["ssh_port"]
    assert f'Outputs:\n\nconnect = "ssh -p {head_port} ' in applied
    assert f'head_ip = "{head_ip}"' in applied and "token = (sensitive)" in applied

    for worker in ("instances.worker[0]", "instances.worker[1]"):
        envs = cluster.state()["resources"][worker]["attributes"]["envs"]
        assert envs == {"MASTER_ADDR": head_ip, "MASTER_URL": f"tcp://{head_ip}:{head_port}"}
        assert computed(cluster, worker)["ip"]

    as_json = json.loads(run_cli(("output", "-json", "-f", cluster.name), cluster.root.parent, env=cluster.env).stdout)
    assert as_json["token"] == {"sensitive": True, "type": "string", "value": SECRET}
    assert as_json["head_ip"] == {"sensitive": False, "type": "string", "value": head_ip}
    assert as_json["worker_ips"]["type"] == ["list", "string"]
    assert as_json["worker_ips"]["value"] == [
        computed(cluster, f"instances.worker[{i}]")["ip"] for i in (0, 1)
    ]
    raw = run_cli(("output", "-raw", "head_ip", "-f", str(cluster.root)), Path("/"), env=cluster.env)
    assert raw.stdout == head_ip
    assert outside(cluster, "output", "token") == "(sensitive)\n"
    # Asked for by name or as JSON, a sensitive output is printed, as Terraform does.
    secret = run_cli(("output", "-raw", "token", "-f", cluster.name), cluster.root.parent, env=cluster.env)
    assert secret.stdout == SECRET
    listed = outside(cluster, "output")
    assert f'head_ip = "{head_ip}"' in listed and "token = (sensitive)" in listed

    shown = outside(cluster, "show")
    for address in ("instances.head", "instances.worker[0]", "instances.worker[1]"):
        assert f"@{computed(cluster, address)['ip']}:" in shown, shown
    state_json = json.loads(outside(cluster, "show", "-json"))
    resources = {r["address"]: r for r in state_json["values"]["root_module"]["resources"]}
    assert resources["instances.head"]["values"]["ip"] == head_ip
    assert state_json["values"]["outputs"]["token"] == {"sensitive": True, "type": "string", "value": None}

    state_text = cluster.state_path.read_text(encoding="utf-8")
    assert SECRET not in state_text and "not-a-real-key" not in state_text
    assert "No changes." in outside(cluster, "plan")
    serial = cluster.serial()
    outside(cluster, "apply", "--auto-approve")
    assert cluster.serial() == serial, "a no-op apply rewrote state (computed attributes are no change)"


def test_replacing_the_head_plans_and_performs_the_workers_replacement(cluster: Project) -> None:
    outside(cluster, "apply", "--auto-approve")
    old_ip = computed(cluster, "instances.head")["ip"]
    old_workers = {cluster.resource_id(f"instances.worker[{i}]") for i in (0, 1)}

    planned = outside(cluster, "plan", "--replace", "instances.head", "-out", "cluster/replace.bin")
    assert "-/+ instances.head" in planned
    for i in (0, 1):
        assert f"-/+ instances.worker[{i}]" in planned
    assert "(envs forces replacement)" in planned
    assert "(envs.MASTER_ADDR uses ${instances.head.ip}, known only after apply (instances.head is replaced))" in planned
    assert f'"MASTER_ADDR" = "{old_ip}" -> (known after apply)' in planned
    assert '~ head_ip    = "' in planned and "-> (known after apply)" in planned

    applied = outside(cluster, "apply", "cluster/replace.bin")
    assert "3 added, 0 changed, 3 destroyed" in applied
    new_ip = computed(cluster, "instances.head")["ip"]
    assert new_ip != old_ip
    for i in (0, 1):
        worker = cluster.state()["resources"][f"instances.worker[{i}]"]
        assert worker["id"] not in old_workers
        assert worker["attributes"]["envs"]["MASTER_ADDR"] == new_ip
    assert f'head_ip = "{new_ip}"' in outside(cluster, "output")
    assert live_names(cluster.live()) == ["deploy", "head", "worker-0", "worker-1"]
    assert "No changes." in outside(cluster, "plan")


def stand_in_ssh(directory: Path) -> tuple[dict[str, str], Path]:
    """A fake `ssh` first on PATH that writes its arguments, one per line, to a file."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    record = directory / "ssh-args.txt"
    script = bin_dir / "ssh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\n', encoding="utf-8")
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}, record


def test_ssh_and_ssh_config_reach_ready_instances(cluster: Project, tmp_path: Path) -> None:
    outside(cluster, "apply", "--auto-approve")
    env, record = stand_in_ssh(tmp_path)
    head = computed(cluster, "instances.head")
    worker = computed(cluster, "instances.worker[1]")
    key = str(cluster.root / "keys" / "deploy")

    run_cli(("ssh", "instances.head", "-f", cluster.name), cluster.root.parent, env={**cluster.env, **env})
    assert record.read_text().splitlines() == [
        "-p", str(head["ssh_port"]), "-i", key, "-o", "IdentitiesOnly=yes", f"{head['ssh_user']}@{head['ip']}",
    ]
    run_cli(
        ("ssh", "-f", str(cluster.root), "instances.worker[1]", "--", "nvidia-smi", "-L"),
        tmp_path,
        env={**cluster.env, **env},
    )
    assert record.read_text().splitlines()[-3:] == [f"{worker['ssh_user']}@{worker['ip']}", "nvidia-smi", "-L"]

    config = outside(cluster, "ssh-config")
    assert f"Host cluster-head\n  HostName {head['ip']}\n  User {head['ssh_user']}\n  Port {head['ssh_port']}\n" in config
    assert f'  IdentityFile "{key}"\n  IdentitiesOnly yes\n' in config
    assert "Host cluster-worker-0\n" in config and "Host cluster-worker-1\n" in config

    record.unlink()
    refused = run_cli(("ssh", "instances.nope", "-f", cluster.name), cluster.root.parent,
                      env={**cluster.env, **env}, expect=1)
    assert "Error: instances.nope is not in state" in refused.stderr and not record.exists()


def test_ssh_refuses_an_instance_that_is_not_ready(tmp_path: Path) -> None:
    project = Project.create(tmp_path, "slow", cluster_config("shadeform"))
    project.env.update({"RECONCILER_VAR_token": SECRET, "RECONCILER_EMULATOR_BOOT_SECONDS": "600"})
    failed = project.run("apply", "--auto-approve", "--create-timeout", "1s", expect=1)
    assert "instances.head: " in failed.output and "not ready after 1s" in failed.output
    assert "instances.worker" not in project.state()["resources"], "a worker started before the head was ready"
    env, record = stand_in_ssh(tmp_path)
    refused = project.run("ssh", "instances.head", env=env, expect=1)
    assert "instances.head is not ready to connect to: its status is create_timeout" in refused.stderr
    assert not record.exists()
    assert "Host " not in project.run("ssh-config").stdout
