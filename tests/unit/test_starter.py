"""`reconciler init`: the starter configuration loads, finds the user's SSH key, never
overwrites without force, and on a terminal asks for providers and a GPU from the offerings."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from reconciler.config import load_config
from reconciler.errors import ReconcilerError
from reconciler.model import Kind, Offering
from reconciler.starter import (
    MODELINE,
    SCHEMA_FILE,
    StarterChoices,
    find_public_key,
    gpu_choices,
    next_commands,
    write_starter,
)
from reconciler.views.init_wizard import ask_choices, run_init

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPk0Zss4K0I05ck6M0v3LwgFehqBeF6jeh4iCKCR219c me@host"


def offering(provider: str, gpu: str, n: int, price: float, available: bool = True) -> Offering:
    return Offering(provider, f"{provider}-{gpu}-{n}-{price}", gpu, n, price, "r", "c", available, {})


@pytest.fixture
def home(tmp_path: Path) -> Path:
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "id_rsa.pub").write_text(KEY + "\n")
    (ssh / "id_ed25519.pub").write_text(KEY + "\n")
    (ssh / "id_ed25519").write_text("private\n")
    return tmp_path / "home"


def test_finds_the_preferred_public_key(home: Path, tmp_path: Path) -> None:
    assert find_public_key(home) == home / ".ssh" / "id_ed25519.pub"
    (home / ".ssh" / "id_ed25519.pub").unlink()
    assert find_public_key(home) == home / ".ssh" / "id_rsa.pub"
    assert find_public_key(tmp_path / "nobody") is None


def test_starter_configuration_loads_with_key_instance_and_modeline(home: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(home))
    target = tmp_path / "infra"
    choices = StarterChoices(providers=("forward", "shadeform"), gpu_type="H100", num_gpus=8,
                             max_hourly_price=30, public_key=find_public_key(home))
    files = write_starter(target, choices, home)
    text = (target / "main.yaml").read_text()
    assert text.startswith(MODELINE + "\n")
    assert "public_key: ${file:~/.ssh/id_ed25519.pub}" in text
    assert "private_key_file: ~/.ssh/id_ed25519" in text
    assert (target / SCHEMA_FILE).read_text().startswith("{")
    assert "state/" in (target / ".gitignore").read_text().splitlines()
    config = load_config(target, environ={})
    [instance] = [r for r in config.resources.values() if r.address.kind is Kind.INSTANCE]
    assert instance.provider == "forward"
    assert instance.offering is not None and instance.offering.num_gpus == 8
    assert instance.attributes["ssh_key"] == "ssh_keys.me"
    assert set(config.providers) == {"forward", "shadeform"}
    assert all(p.endpoint == "embedded" for p in config.providers.values())
    assert files.written == (target / "main.yaml", target / SCHEMA_FILE)


def test_never_overwrites_without_force_and_keeps_gitignore_lines(tmp_path: Path, home: Path) -> None:
    target = tmp_path / "infra"
    target.mkdir()
    (target / "main.yaml").write_text("mine: true\n")
    (target / ".gitignore").write_text("*.pyc")
    with pytest.raises(ReconcilerError, match="main.yaml already exists; nothing was written"):
        write_starter(target, StarterChoices(), home)
    assert (target / "main.yaml").read_text() == "mine: true\n"
    assert not (target / SCHEMA_FILE).exists()
    write_starter(target, StarterChoices(real_api=True), home, force=True)
    assert "api_key: ${env:SHADEFORM_API_KEY}" in (target / "main.yaml").read_text()
    lines = (target / ".gitignore").read_text().splitlines()
    assert lines[0] == "*.pyc" and "state/" in lines
    write_starter(target, StarterChoices(), home, force=True)
    assert (target / ".gitignore").read_text().count("state/") == 1


def test_gpu_choices_are_the_cheapest_available_per_gpu() -> None:
    found = [offering("shadeform", "H100", 1, 3.0), offering("shadeform", "H100", 1, 2.5),
             offering("forward", "A100", 1, 1.2), offering("forward", "L40S", 1, 0.5, available=False)]
    assert [(c.provider, c.gpu_type, c.hourly_price) for c in gpu_choices(found)] == [
        ("forward", "A100", 1.2), ("shadeform", "H100", 2.5)]


def test_interactive_init_asks_providers_gpu_and_cap(tmp_path: Path, home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    answers: list[Any] = ["both", 2, 4.0]
    asked: list[str] = []

    def ask(text: str, **kwargs: Any) -> Any:
        asked.append(text)
        return answers.pop(0)

    seen: list[tuple[str, ...]] = []

    def offerings_for(providers: tuple[str, ...]) -> list[Offering]:
        seen.append(providers)
        return [offering("forward", "A100", 1, 1.2), offering("shadeform", "H100", 2, 3.1)]

    out = Console(file=io.StringIO(), width=100, record=True)
    choices = ask_choices(out, StarterChoices(), offerings_for, ask=ask, confirm=lambda *a, **k: False)
    assert seen == [("shadeform", "forward")]
    assert choices.providers == ("shadeform", "forward")
    assert (choices.gpu_type, choices.num_gpus, choices.max_hourly_price) == ("H100", 2, 4.0)
    assert "   2. 2x H100 on shadeform, from $3.10/h" in out.export_text()
    assert asked == ["Providers", "GPU", "Highest $/h you accept for it"]


def test_run_init_prints_the_next_two_commands(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = Console(file=io.StringIO(), width=100, record=True)
    run_init(out, Path("infra"), StarterChoices(), interactive=False, force=False, home=home,
             offerings_for=lambda names: [])
    text = out.export_text()
    assert text.rstrip().endswith("Next:\n  reconciler plan -f infra\n  reconciler apply -f infra")
    assert next_commands(tmp_path, tmp_path) == ["reconciler plan", "reconciler apply"]
