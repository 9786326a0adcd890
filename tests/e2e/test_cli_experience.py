"""The everyday CLI as a new user meets it, through the installed command: init, validate
with every error shown at its line, and apply in a terminal with the live view (a
pseudo-terminal read through pyte)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pyte
import pytest
from lifecycle_support import PUBLIC_KEY, cli_environment, reconciler_executable, run_cli

COLUMNS, LINES = 100, 40


def display(screen: pyte.Screen) -> str:
    return "\n".join(line.rstrip() for line in screen.display).rstrip()


def run_in_terminal(
    args: list[str], cwd: Path, env: dict[str, str], typed: str = ""
) -> tuple[int, list[str], str]:
    """Run the CLI on a pseudo-terminal (with `typed` waiting as keyboard input); the screens
    seen while it ran and the last one."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    process = subprocess.Popen(
        [str(reconciler_executable()), *args], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    if typed:
        os.write(master, typed.encode())
    screen = pyte.Screen(COLUMNS, LINES)
    stream = pyte.ByteStream(screen)
    screens: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            stream.feed(data)
            screens.append(display(screen))
        returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return returncode, screens, display(screen)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "id_ed25519.pub").write_text(PUBLIC_KEY + "\n")
    return tmp_path / "home"


def test_init_then_validate_then_apply_with_the_live_view(tmp_path: Path, home: Path) -> None:
    project = tmp_path / "stack"
    env = {"HOME": str(home)}
    made = run_cli(["init", "stack", "--provider", "shadeform", "--gpu", "A6000"], tmp_path, env=env)
    assert made.stdout.rstrip().endswith("Next:\n  reconciler plan -f stack\n  reconciler apply -f stack")
    text = (project / "main.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=./reconciler.schema.json\n")
    assert "${file:~/.ssh/id_ed25519.pub}" in text
    # Every error at once, each with its line and a caret; -json for editors.
    broken = project / "broken"
    broken.mkdir()
    (broken / "main.yaml").write_text(
        text.replace("    provider: shadeform\n    # Req", "    provider: shadeform\n    colour: blue\n    # Req").replace(
            "      num_gpus: 1", "      num_gpus: lots"
        )
    )
    refused = run_cli(["validate", "-f", "broken"], project, env=env, expect=1)
    assert "    colour: blue\n" in refused.stderr and "^^^^^^" in refused.stderr
    assert "Found 2 errors in 1 file." in refused.stderr

    # Apply on a terminal: the live view appears while the instance boots, then leaves the summary.
    terminal_env = cli_environment({**env, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(LINES),
                                    "RECONCILER_EMULATOR_BOOT_SECONDS": "1.5"})
    terminal_env.pop("CI", None)
    code, screens, final = run_in_terminal(["apply", "--auto-approve"], project, terminal_env)
    assert code == 0, final
    live = [s for s in screens if "in flight" in s]
    assert any("+ instances.gpu  booting 00:0" in s and ", status " in s for s in live), live[-3:]
    assert any("+ ssh_keys.me" in s for s in live) or "ssh_keys.me" in final
    assert final.endswith("Apply complete! Resources: 2 added, 0 changed, 0 destroyed.")
    assert "in flight" not in final


def test_init_on_a_terminal_asks_for_providers_and_a_gpu_from_the_offerings(tmp_path: Path, home: Path) -> None:
    env = cli_environment({"HOME": str(home), "TERM": "xterm-256color"})
    env.pop("CI", None)
    # Answers: providers, GPU number 1, the suggested price cap, and no to the real APIs.
    code, _, final = run_in_terminal(["init", "infra"], tmp_path, env, typed="forward\n1\n\nn\n")
    assert code == 0, final
    assert "Cheapest available GPUs:" in final and "   1. " in final and " on forward, from $" in final
    text = (tmp_path / "infra" / "main.yaml").read_text()
    assert "  forward:\n" in text and "    provider: forward\n" in text and "max_hourly_price: " in text
    assert final.endswith("Next:\n  reconciler plan -f infra\n  reconciler apply -f infra")
