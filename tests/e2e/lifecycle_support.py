"""Running the installed `reconciler` command the way a user or a CI job does, and looking at
what it left behind: the state file, the plan file and the embedded emulator's sandbox.

Every run is a subprocess with no TTY (stdin is /dev/null), in a config directory under the
test's tmp_path, with the embedded emulator's boot and delete delays cut to a tenth of a
second. The sandbox is read with the emulator's own classes, and "outside" changes (a
resource deleted behind reconciler's back) go through the emulated API over its in-process
transport, exactly as another tool holding the same API key would make them.

Loaded by the test modules with `pytest_plugins` after they import its helpers, so pytest
cannot rewrite its asserts: PYTEST_DONT_REWRITE. Its asserts carry their own messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import CliResult

from reconciler.emulator import EmbeddedCloud, LedgerEntry, World
from reconciler.engine import EMBEDDED_API_KEY
from reconciler.providers.base import split_name_marker

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcUIS47SFVib3yJlqOwvcrX5PH+CxglMj9MWWZzgI2a e2e@example"
BOOT_SECONDS = 0.1
DELETE_SECONDS = 0.05
CLI_TIMEOUT_SECONDS = 120
# Variables of the caller's shell that would change what a run does; tests set their own.
_INHERITED_PREFIXES = ("RECONCILER_VAR_", "RECONCILER_EMULATOR_")
_INHERITED_NAMES = ("SHADEFORM_API_KEY", "FORWARD_API_KEY", "NO_COLOR", "FORCE_COLOR")

# Where each emulated API deletes a resource: (method, path template, auth header).
_DELETE_CALLS: dict[tuple[str, str], tuple[str, str]] = {
    ("shadeform", "instances"): ("POST", "/instances/{id}/delete"),
    ("shadeform", "volumes"): ("POST", "/volumes/{id}/delete"),
    ("shadeform", "ssh_keys"): ("POST", "/sshkeys/{id}/delete"),
    ("forward", "instances"): ("DELETE", "/spot/instances/{id}"),
    ("forward", "volumes"): ("DELETE", "/spot/volumes/{id}"),
    ("forward", "ssh_keys"): ("DELETE", "/spot/ssh-keys/{id}"),
}


def shadeform_trainer(*, gpu: str = "A6000", size_gb: object = 100, trainer: str = "") -> str:
    """The e2e projects' common core: key `deploy`, volume `data` and instance `trainer` using
    both, on Shadeform in lambdalabs us-east-1; `trainer` adds lines to the instance."""
    return f"""ssh_keys:
  - name: deploy
    provider: shadeform
    public_key: ${{file:deploy.pub}}
volumes:
  - name: data
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    size_gb: {size_gb}
instances:
  - name: trainer
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: {gpu}
    ssh_key: deploy
    volumes: [data]
{trainer}"""


def reconciler_executable() -> Path:
    """The console script installed beside this interpreter (what `pip install .` puts on PATH)."""
    path = Path(sys.executable).parent / "reconciler"
    if not path.exists():
        pytest.skip(f"the reconciler command is not installed beside {Path(sys.executable).name}")
    return path


def cli_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without reconciler's own knobs, plus a fast emulator."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _INHERITED_NAMES and not name.startswith(_INHERITED_PREFIXES)
    }
    env.update(
        {
            "RECONCILER_EMULATOR_BOOT_SECONDS": str(BOOT_SECONDS),
            "RECONCILER_EMULATOR_DELETE_SECONDS": str(DELETE_SECONDS),
            "COLUMNS": "200",
        }
    )
    env.update(extra or {})
    return env


def run_cli(
    args: tuple[str, ...] | list[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    expect: int | None = 0,
) -> CliResult:
    """Run `reconciler ARGS` in `cwd` with no TTY; `expect` is the exit code required (None: any)."""
    completed = subprocess.run(
        [str(reconciler_executable()), *args],
        cwd=cwd,
        env=cli_environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    result = CliResult(tuple(args), completed.returncode, completed.stdout, completed.stderr)
    if expect is not None:
        assert result.returncode == expect, result.describe()
    return result


@dataclass
class Project:
    """A config directory as a user keeps it: YAML files, a key, and `state/` after the first run.

    The config's name (and so its state and sandbox file names) is the directory's name.
    """

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, parent: Path, name: str = "stack", config: str | None = None) -> Project:
        root = parent / name
        root.mkdir(parents=True)
        (root / "deploy.pub").write_text(PUBLIC_KEY + "\n", encoding="utf-8")
        project = cls(root)
        if config is not None:
            project.write(config)
        return project

    @classmethod
    def copy_of(cls, source: Path, parent: Path, name: str | None = None) -> Project:
        """A copy of an example directory (without any state it may have locally)."""
        root = parent / (name or source.name)
        shutil.copytree(source, root, ignore=shutil.ignore_patterns("state", "*.bin", "__pycache__"))
        return cls(root)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def state_path(self) -> Path:
        return self.state_dir / f"{self.name}.json"

    @property
    def sandbox_path(self) -> Path:
        return self.state_dir / f"{self.name}.sandbox.json"

    def write(self, text: str, filename: str = "main.yaml") -> Path:
        path = self.root / filename
        path.write_text(text, encoding="utf-8")
        return path

    def run(self, *args: str, expect: int | None = 0, env: Mapping[str, str] | None = None) -> CliResult:
        return run_cli(args, self.root, env={**self.env, **(env or {})}, expect=expect)

    # -- what the runs left behind ----------------------------------------------------------

    def state(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.state_path.read_text(encoding="utf-8"))
        return document

    def serial(self) -> int:
        return int(self.state()["serial"])

    def resource_id(self, address: str) -> str:
        return str(self.state()["resources"][address]["id"])

    def files(self) -> dict[str, bytes]:
        """Every file under state/ (lock files aside) with its bytes: a before/after fingerprint."""
        if not self.state_dir.exists():
            return {}
        return {
            str(path.relative_to(self.root)): path.read_bytes()
            for path in sorted(self.state_dir.rglob("*"))
            if path.is_file() and not path.name.endswith((".lock", ".lock.info"))
        }

    def ledger(self) -> list[LedgerEntry]:
        """Everything the emulated clouds ever created for this project, deleted ones included."""
        if not self.sandbox_path.exists():
            return []
        return World.load(self.sandbox_path).ledger()

    def live(self) -> list[LedgerEntry]:
        """What still runs (or is on its way up): no delete was ever asked for it."""
        return [entry for entry in self.ledger() if entry.deleted_at is None]

    def delete_outside(self, address: str) -> None:
        """Delete the resource at `address` through the emulated API, behind reconciler's back."""
        held = self.state()["resources"][address]
        provider, kind, resource_id = held["provider"], held["kind"], held["id"]
        method, template = _DELETE_CALLS[(provider, kind)]
        asyncio.run(self._call_api(provider, method, template.format(id=resource_id)))

    async def _call_api(self, api: str, method: str, path: str) -> None:
        headers = (
            {"X-API-KEY": EMBEDDED_API_KEY}
            if api == "shadeform"
            else {"Authorization": f"Bearer {EMBEDDED_API_KEY}"}
        )
        with EmbeddedCloud(
            self.sandbox_path, boot_seconds=BOOT_SECONDS, delete_seconds=DELETE_SECONDS
        ) as cloud:
            async with httpx.AsyncClient(
                base_url=cloud.base_url(api), transport=cloud.transport(api), headers=headers
            ) as client:
                response = await client.request(method, path)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"


def live_names(entries: list[LedgerEntry]) -> list[str]:
    """Ledger names without reconciler's ownership suffix (`deploy--rc-...` -> `deploy`)."""
    return sorted(split_name_marker(entry.name)[0] for entry in entries)


@dataclass
class RecordedRequest:
    method: str
    path: str


class RequestRecorder:
    """A stand-in API endpoint on 127.0.0.1 that records every request and answers 500.

    Configs pointed at it prove that a refused run made no API call at all: the real
    emulator cannot tell a read from no call, this can.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                recorder.requests.append(RecordedRequest(self.command, self.path))
                body = b'{"error": "recorder: no API call was expected"}'
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _record

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> RequestRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def recorder() -> Iterator[RequestRecorder]:
    with RequestRecorder() as running:
        yield running


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path)
