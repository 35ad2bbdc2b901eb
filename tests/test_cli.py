"""CLI smoke tests: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "msam_export", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "inspect" in result.stdout


def test_help_texts_survive_rich_markup():
    """--help renders through rich markup, which silently drops anything that parses as a tag."""
    import typer.main
    from rich.text import Text

    from msam_export.cli import app

    group = typer.main.get_command(app)
    texts = [(name, "", command.help or "") for name, command in group.commands.items()]
    texts += [
        (name, param.name, param.help or "") for name, command in group.commands.items() for param in command.params
    ]
    swallowed = [
        (name, option) for name, option, text in texts if Text.from_markup(text).plain != text.replace("\\[", "[")
    ]
    assert swallowed == []
    broken = [name for name, command in group.commands.items() if "\n" in (command.help or "").replace("\n\n", "")]
    assert broken == [], "paragraphs with hard line breaks render ragged"


def test_inspect_default_json():
    result = run_cli("inspect", "--default", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["variant"] == "litemedsam" and info["format"] == "raw"
    assert info["input_size"] == [256, 256]
    assert info["parameters"]["prompt_encoder"] == 6_220
    assert info["parameters"]["mask_decoder"] == 4_058_340
    assert info["sha256"].startswith("79d8c9dca6db")


@pytest.fixture
def bad_files(tmp_path):
    files = {
        "random": tmp_path / "random.pt",
        "json": tmp_path / "config.json",
        "pickle": tmp_path / "model.pth",
        "foreign": tmp_path / "resnet.pt",
    }
    files["random"].write_bytes(os.urandom(2048))
    files["json"].write_text('{"model": "l0"}')
    torch.save(torch.nn.Linear(2, 2), files["pickle"])
    torch.save({"fc.weight": torch.zeros(1)}, files["foreign"])
    return files


@pytest.mark.parametrize("kind", ["random", "json", "pickle", "foreign"])
def test_bad_checkpoint_one_line_exit_2(bad_files, kind):
    result = run_cli("inspect", str(bad_files[kind]))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ")


def test_forced_wrong_variant_exit_2():
    result = run_cli("inspect", "--default", "--variant", "l0")
    assert result.returncode == 2
    assert "not a MedficientSAM-L0 checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_checkpoint_exit_2():
    result = run_cli("inspect")
    assert result.returncode == 2 and "no checkpoint given" in result.stderr
