"""Descriptions and examples for every key of the configuration's JSON Schema, so editors
(yaml-language-server, VS Code, JetBrains) show what a key means and offer an example.

Keyed by property path as a user writes it: `providers.*.api_key` (`*` is any map key),
`instances[].launch.image` (`[]` is any list item). Keys shared by every resource section
are written once under `resources[]` (it stands for ssh_keys[], volumes[] and instances[]).
`apply_schema_docs` is called when the schema is generated; a key declared in schema.py
with no entry here fails tests/unit/test_schema_docs.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_RESOURCE_SECTIONS = ("ssh_keys[]", "volumes[]", "instances[]")
_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPk0Zss4K0I05ck6M0v3LwgFehqBeF6jeh4iCKCR219c me@host"

# path -> (description, examples)
SCHEMA_DOCS: dict[str, tuple[str, list[Any]]] = {
    "name": ("Names this configuration's state (state/<name>.json) and its PostgreSQL stack; default: "
             "the file's stem, or the directory's folder name.", ["ml-platform"]),
    "providers": ("How to reach each provider API, by provider name (shadeform, forward).",
                  [{"shadeform": {"api_key": "${env:SHADEFORM_API_KEY}"}}]),
    "providers.*.api_key": ("API key; default from SHADEFORM_API_KEY / FORWARD_API_KEY. Never written to "
                            "state, plans or logs; prefer ${env:...} to a literal.", ["${env:SHADEFORM_API_KEY}"]),
    "providers.*.endpoint": ("'embedded' (the built-in emulator) or the API's base URL.",
                             ["embedded", "https://api.shadeform.ai/v1"]),
    "providers.*.rate_limit": ("Requests per second sent to this provider.", [5]),
    "providers.*.timeout": ("Seconds one request may take.", [30]),
    "providers.*.max_retries": ("Retries of a request refused with 429 or 5xx (backoff with jitter).", [5]),
    "providers.*.list_consistency_seconds": ("How long a list may lag behind a write.", [10]),
    "variables": ("Input variables, by name; use them as ${var.NAME}.", [{"gpu": {"default": "A6000"}}]),
    "variables.*.type": ("The value's type: string, number, bool, list or map.", ["string"]),
    "variables.*.default": ("The value when no var file, RECONCILER_VAR_<name> or --var gives one.", ["A6000"]),
    "variables.*.description": ("What the variable is for (shown in errors).", ["GPU type for workers"]),
    "variables.*.sensitive": ("Never printed; values are scrubbed from all output.", [True]),
    "backend": ("Where state is kept: a local file (default) or PostgreSQL.",
                [{"type": "postgres", "url": "${env:DATABASE_URL}"}]),
    "backend.type": ("local (a JSON file beside the configuration) or postgres.", ["local", "postgres"]),
    "backend.path": ("local: the state file, relative to the YAML file.", ["state/prod.json"]),
    "backend.url": ("postgres: the connection URL (its password is treated as a secret).",
                    ["${env:DATABASE_URL}"]),
    "backend.schema": ("postgres: the schema holding the state tables.", ["reconciler"]),
    "backend.stack": ("postgres: the key of this state; default: the configuration's name.", ["prod"]),
    "emulator": ("How the built-in emulator behaves for endpoint: embedded (RECONCILER_EMULATOR_* override).",
                 [{"boot_seconds": 2}]),
    "emulator.boot_seconds": ("Seconds an instance takes from pending to active.", [2]),
    "emulator.delete_seconds": ("Seconds a deleted instance stays in deleting.", [1]),
    "emulator.list_lag_seconds": ("How far Forward's cached lists lag behind writes.", [0.5]),
    "emulator.latency_ms": ("Milliseconds added to every API call.", [20]),
    "emulator.faults": ("Fault spec: provider.operation=fault:probability, comma separated.",
                        ["shadeform.create=lost_response:0.5"]),
    "emulator.seed": ("Seed of the fault probabilities, for repeatable runs.", [7]),
    "policy": ("Budgets a plan must stay inside; a plan over them fails.", [{"max_hourly_spend": 40}]),
    "policy.max_hourly_spend": ("Dollars per hour, everything the plan leaves running.", [40]),
    "policy.max_monthly_spend": ("Dollars per month, everything the plan leaves running.", [20000]),
    "ssh_keys": ("SSH public keys registered with a provider; instances name one in ssh_key.",
                 [[{"name": "deploy", "provider": "shadeform", "public_key": "${file:~/.ssh/id_ed25519.pub}"}]]),
    "volumes": ("Storage volumes; an instance mounts them by name in volumes.",
                [[{"name": "data", "provider": "shadeform", "cloud": "hyperstack", "region": "canada-1",
                   "size_gb": 500}]]),
    "instances": ("GPU instances: pinned to an exact offering, or by requirements (offering:).",
                  [[{"name": "trainer", "provider": "forward", "offering": {"gpu_type": "H100", "num_gpus": 8}}]]),
    "outputs": ("Named values printed after apply and by `reconciler output`.",
                [{"trainer_ip": {"value": "${instances.trainer.ip}"}}]),
    "outputs.*.value": ("Any value; may use ${instances.NAME.ATTRIBUTE} and ${var.X}.", ["${instances.trainer.ip}"]),
    "outputs.*.description": ("What the output is for.", ["address of the trainer"]),
    "outputs.*.sensitive": ("Printed only when asked for by name (output NAME, -json).", [True]),
    "resources[].name": ("Unique among its section; with the section it makes the address (instances.NAME).",
                         ["trainer"]),
    "resources[].count": ("Create NAME[0..count-1], named <name>-<i> (at most 10000).", [4]),
    "resources[].provider": ("Which provider holds it: shadeform or forward.", ["shadeform", "forward"]),
    "resources[].depends_on": ("Addresses this one waits for, besides its references.", [["volumes.data"]]),
    "resources[].lifecycle": ("How changes to this resource are made.", [{"prevent_destroy": True}]),
    "resources[].lifecycle.prevent_destroy": ("A plan that would delete or replace it fails.", [True]),
    "resources[].lifecycle.create_before_destroy": ("A replacement is created before the old one is deleted.",
                                                    [True]),
    "resources[].lifecycle.ignore_changes": ("Attributes whose drift or edits never cause a change.", [["tags"]]),
    "resources[].cloud": ("The underlying cloud (Shadeform) or provider (Forward).", ["hyperstack"]),
    "resources[].region": ("The region, as the provider names it.", ["canada-1"]),
    "ssh_keys[].providers": ("Declare the key for several providers: one object on each, addressed "
                             'ssh_keys.NAME["provider"]; ssh_key: NAME uses the one where the instance is.',
                             [["shadeform", "forward"]]),
    "ssh_keys[].public_key": ("The public key text (OpenSSH format).", ["${file:~/.ssh/id_ed25519.pub}", _PUBLIC_KEY]),
    "ssh_keys[].private_key_file": ("Local path of the matching private key, for `reconciler ssh` (never read).",
                                    ["~/.ssh/id_ed25519"]),
    "volumes[].size_gb": ("Size in GB.", [500]),
    "instances[].offering": ("Requirements instead of a pinned offering: the plan picks the cheapest match "
                             "and pins it until --reselect.", [{"gpu_type": "H100", "num_gpus": 8,
                                                                "max_hourly_price": 25}]),
    "instances[].offering.providers": ("Choose the provider too, among these (leave out provider:): "
                                       "ranked across their catalogues, pinned like any choice.",
                                       [["shadeform", "forward"]]),
    "instances[].offering.gpu_type": ("One GPU type or a list of acceptable ones.", ["H100", ["A100", "H100"]]),
    "instances[].offering.num_gpus": ("GPUs per instance.", [8]),
    "instances[].offering.max_hourly_price": ("Most dollars per hour for the whole instance.", [25.0]),
    "instances[].offering.max_price_per_gpu_hour": ("Most dollars per GPU-hour.", [3.0]),
    "instances[].offering.min_vram_per_gpu_gb": ("Least GB of memory per GPU.", [80]),
    "instances[].offering.min_vcpus": ("Least vCPUs.", [32]),
    "instances[].offering.min_memory_gb": ("Least GB of RAM.", [256]),
    "instances[].offering.region": ("Only this region.", ["us-east-1"]),
    "instances[].offering.cloud": ("Only this cloud.", ["hyperstack"]),
    "instances[].offering.regions": ("Allowed regions.", [["us-east-1", "us-west-2"]]),
    "instances[].offering.clouds": ("Allowed clouds.", [["hyperstack", "lambda"]]),
    "instances[].offering.exclude_regions": ("Regions never used.", [["eu-north-1"]]),
    "instances[].offering.exclude_clouds": ("Clouds never used.", [["massedcompute"]]),
    "instances[].offering.rental_type": ("on_demand or spot (cheaper; the provider may reclaim it).", ["spot"]),
    "instances[].offering.deployment_type": ("vm, container or baremetal.", ["vm"]),
    "instances[].ssh_key": ("Name of an ssh_keys entry (name[i] if counted).", ["deploy"]),
    "instances[].volumes": ("Names of volumes entries to mount (same provider and placement).", [["data"]]),
    "instances[].envs": ("Environment variables; {value, sensitive: true} keeps one out of all output.",
                         [{"MODEL": "llama", "TOKEN": {"value": "${env:HF_TOKEN}", "sensitive": True}}]),
    "instances[].envs.*.value": ("The variable's value.", ["${env:HF_TOKEN}"]),
    "instances[].envs.*.sensitive": ("Keep the value out of state, plans and logs.", [True]),
    "instances[].launch.envs.*.value": ("The variable's value.", ["${env:HF_TOKEN}"]),
    "instances[].launch.envs.*.sensitive": ("Keep the value out of state, plans and logs.", [True]),
    "instances[].on_failure": ("What the next apply does with an instance in error: replace it, or keep it.",
                               ["replace", "keep"]),
    "instances[].fallback": ("Capacity failover along the plan's ranked offerings (with offering:).",
                             [{"max_attempts": 3}]),
    "instances[].fallback.max_attempts": ("Creates tried in all, the plan's choice included.", [3]),
    "instances[].fallback.on_boot_failure": ("Also move on when an instance ends in error while booting "
                                             "(it is deleted).", [True]),
    "instances[].expires_after": ("Delete this long after the plan that creates it.", ["8h", "2d"]),
    "instances[].expires_at": ("Delete at this RFC 3339 time.", ["2030-01-31T18:00:00Z"]),
    "instances[].max_spend": ("Delete once it has cost this many dollars.", [500]),
    "instances[].shade_instance_type": ("Shadeform pin: the instance type, with cloud and region.", ["A6000"]),
    "instances[].os": ("Shadeform: the operating system image.", ["ubuntu22.04_cuda12.2_shade_os"]),
    "instances[].launch": ("Shadeform: what runs at boot, a docker container or a startup script.",
                           [{"type": "docker", "image": "vllm/vllm-openai:latest"}]),
    "instances[].launch.type": ("docker or script.", ["docker", "script"]),
    "instances[].launch.image": ("docker: the image to run.", ["vllm/vllm-openai:latest"]),
    "instances[].launch.args": ("docker: arguments to the image's entry point.", ["--model meta-llama/Llama-3-8B"]),
    "instances[].launch.envs": ("docker: the container's environment (as instances[].envs).", [{"PORT": "8000"}]),
    "instances[].launch.port_mappings": ("docker: host ports published to the container.",
                                         [[{"host_port": 80, "container_port": 8000}]]),
    "instances[].launch.port_mappings[].host_port": ("Port on the instance.", [80]),
    "instances[].launch.port_mappings[].container_port": ("Port inside the container.", [8000]),
    "instances[].launch.shared_memory_in_gb": ("docker: /dev/shm size in GB.", [16]),
    "instances[].launch.volume_mounts": ("docker: host paths mounted into the container.",
                                         [[{"host_path": "/data", "container_path": "/data"}]]),
    "instances[].launch.volume_mounts[].host_path": ("Path on the instance.", ["/data"]),
    "instances[].launch.volume_mounts[].container_path": ("Path inside the container.", ["/data"]),
    "instances[].launch.script": ("script: the startup script, base64 or plain text.", ["#!/bin/sh\necho hi\n"]),
    "instances[].tags": ("Shadeform tags (updated in place).", [["team-ml"]]),
    "instances[].rental_type": ("Shadeform: on_demand or spot.", ["on_demand"]),
    "instances[].auto_delete": ("Shadeform deletes the instance at a date or spend.",
                                [{"spend_threshold": "100.00"}]),
    "instances[].auto_delete.date_threshold": ("At this RFC 3339 time.", ["2030-01-31T18:00:00Z"]),
    "instances[].auto_delete.spend_threshold": ("Once it has cost this many dollars.", ["100.00"]),
    "instances[].alert": ("Shadeform e-mails an alert at a date or spend.", [{"date_threshold": "2030-01-31T18:00:00Z"}]),
    "instances[].alert.date_threshold": ("At this RFC 3339 time.", ["2030-01-31T18:00:00Z"]),
    "instances[].alert.spend_threshold": ("Once it has cost this many dollars.", ["50.00"]),
    "instances[].offering_id": ("Forward pin: a compute offering id (`reconciler offerings` lists them).",
                                ["off-h100-8x-us-east"]),
}


def _generic(path: str) -> str | None:
    for section in _RESOURCE_SECTIONS:
        if path.startswith(section + "."):
            return "resources[]" + path[len(section):]
    return None


def docs_for(path: str) -> tuple[str, list[Any]] | None:
    found = SCHEMA_DOCS.get(path)
    if found is None:
        generic = _generic(path)
        found = SCHEMA_DOCS.get(generic) if generic else None
    return found


def schema_properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (property path, property schema) reachable from the root, following $refs once per path."""
    definitions = schema.get("$defs", {})

    def walk(node: dict[str, Any], path: str, trail: frozenset[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name in trail:
                return
            node, trail = definitions[name], trail | {name}
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(key, []):
                yield from walk(sub, path, trail)
        items = node.get("items")
        if isinstance(items, dict):
            yield from walk(items, path + "[]", trail)
        values = [node["additionalProperties"]] if isinstance(node.get("additionalProperties"), dict) else []
        values += list(node.get("patternProperties", {}).values())
        for value in values:
            yield from walk(value, path + ".*", trail)
        for key, value in node.get("properties", {}).items():
            child = f"{path}.{key}" if path else key
            yield child, value
            yield from walk(value, child, trail)

    yield from walk(schema, "", frozenset())


def apply_schema_docs(schema: dict[str, Any]) -> dict[str, Any]:
    """Set `description` and `examples` on every documented property (in place; returned)."""
    for path, prop in schema_properties(schema):
        found = docs_for(path)
        if found is not None:
            prop["description"], prop["examples"] = found[0], _fitting(prop, found[1])
    return schema


def _fitting(prop: dict[str, Any], examples: list[Any]) -> list[Any]:
    """The examples this property accepts: a variant's `provider` is a const (one of the two)."""
    allowed = [prop["const"]] if "const" in prop else prop.get("enum")
    if allowed is None:
        return list(examples)
    return [example for example in examples if example in allowed] or list(allowed)
