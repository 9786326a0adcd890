"""Through the installed CLI: a change Shadeform makes in place keeps the running GPU, and a
replacement whose new object cannot be created is refused by the plan with nothing deleted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from lifecycle_support import BOOT_SECONDS, DELETE_SECONDS, Project, run_cli, shadeform_trainer

from reconciler.emulator import EmbeddedCloud
from reconciler.engine import EMBEDDED_API_KEY

pytest_plugins = ["lifecycle_support"]


def config(
    *,
    tags: str = "[team-ml]",
    alert: str = "50",
    auto_delete: str | None = None,
    size_gb: int = 100,
    gpu: str = "A6000",
) -> str:
    text = shadeform_trainer(
        gpu=gpu, size_gb=size_gb, trainer=f'    tags: {tags}\n    alert: {{spend_threshold: "{alert}"}}\n'
    )
    if auto_delete is not None:
        text += f'    auto_delete: {{date_threshold: "{auto_delete}"}}\n'
    return text


def instance_info(project: Project, instance_id: str) -> dict[str, Any]:
    """What the Shadeform API itself reports for the instance."""

    async def read() -> dict[str, Any]:
        with EmbeddedCloud(
            project.sandbox_path, boot_seconds=BOOT_SECONDS, delete_seconds=DELETE_SECONDS
        ) as cloud:
            async with httpx.AsyncClient(
                base_url=cloud.base_url("shadeform"),
                transport=cloud.transport("shadeform"),
                headers={"X-API-KEY": EMBEDDED_API_KEY},
            ) as client:
                response = await client.get(f"/instances/{instance_id}/info")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return asyncio.run(read())


def test_tags_and_budget_thresholds_change_in_place_on_the_running_instance(project: Project) -> None:
    project.write(config())
    project.run("apply", "--auto-approve")
    trainer = project.resource_id("instances.trainer")

    project.write(config(tags="[team-ml, prod]", alert="100", auto_delete="2030-01-01T00:00:00Z"))
    updated = project.run("apply", "--auto-approve")
    assert "~ instances.trainer" in updated.stdout, updated.describe()
    assert "forces replacement" not in updated.stdout
    assert "Apply complete! Resources: 0 added, 1 changed, 0 destroyed." in updated.stdout
    assert project.resource_id("instances.trainer") == trainer
    assert [e.id for e in project.ledger() if e.kind == "instances"] == [trainer]

    info = instance_info(project, trainer)
    assert "prod" in info["tags"] and "team-ml" in info["tags"]
    assert info["alert"] == {"spend_threshold": "100"}
    assert info["auto_delete"] == {"date_threshold": "2030-01-01T00:00:00Z"}
    settled = project.run("plan", "--detailed-exitcode", expect=0)
    assert "No changes." in settled.stdout


def test_a_replacement_that_cannot_be_created_is_refused_by_the_plan_and_nothing_is_deleted(
    project: Project, tmp_path: Path
) -> None:
    project.write(config())
    project.run("apply", "--auto-approve")
    before = project.files()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    main_yaml = str(project.root / "main.yaml")

    # A volume size no API creates: refused by validate, so by plan and apply, with its line.
    project.write(config(size_gb=10**15))
    refused = run_cli(("apply", "--auto-approve", "-f", main_yaml), elsewhere, expect=1)
    assert "main.yaml:10:" in refused.stderr and "volumes[0].size_gb" in refused.stderr, refused.describe()
    assert "Traceback" not in refused.output
    assert run_cli(("validate", "-f", main_yaml), elsewhere, expect=1).stderr.count("size_gb") >= 1

    # An instance type nobody sells: the plan fails before the old instance is deleted.
    project.write(config(gpu="NOPE9000"))
    unsold = project.run("apply", "--auto-approve", expect=1)
    assert "sells no offering" in unsold.stderr and "shade_instance_type=NOPE9000" in unsold.stderr
    assert "reconciler offerings" in unsold.stderr
    assert "Traceback" not in unsold.output

    assert all(entry.deleted_at is None for entry in project.ledger())
    assert project.files() == before
