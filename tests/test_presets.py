"""The lesson presets of conf/experiment/ (vanishing, init, depth, activations, optimizers,
schedules, regularization, batch_size, learning_rate): each documents its command and claim,
every setting its sweep visits composes and validates, and each runs one short epoch."""
from __future__ import annotations

import importlib.util
import itertools
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_inprocess
from runner.config import validate
from runner.help import conf_dir

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("lessons_script", ROOT / "scripts" / "lessons.py")
lessons = importlib.util.module_from_spec(_spec)
sys.modules["lessons_script"] = lessons  # dataclasses look their module up
_spec.loader.exec_module(lessons)

PRESETS = list(lessons.LESSONS)


def test_the_nine_presets_exist():
    assert len(PRESETS) == 9
    for name in PRESETS:
        assert (conf_dir() / "experiment" / f"{name}.yaml").is_file(), name


@pytest.mark.parametrize("name", PRESETS)
def test_header_gives_command_claim_and_expectation(name):
    lines = (conf_dir() / "experiment" / f"{name}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_"
    assert lines[2].startswith(f"# run: runner -m experiment={name} ")
    p = lessons.read_preset(name)
    assert p.title and p.commands and all(f"experiment={name}" in c for c in p.commands)
    assert len(p.claim) > 80 and len(p.should) > 40, "a Claim and a Should show paragraph"
    # the (first) sweep compares options
    assert any("," in a for a in p.commands[0]), p.command_line


def grid(args):
    """The overrides of every job of a `runner -m` command line (Hydra's basic grid)."""
    axes = [[f"{a.partition('=')[0]}={v}" for v in a.partition("=")[2].split(",")]
            for a in args]
    return [list(point) for point in itertools.product(*axes)]


@pytest.mark.parametrize("name", PRESETS)
def test_every_job_of_the_sweep_composes_and_validates(name):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    jobs = [job for args in lessons.read_preset(name).commands for job in grid(args)]
    assert len(jobs) >= 2
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        for job in jobs:
            cfg = validate(hcompose("config", overrides=job))
            assert cfg.name == name


@pytest.mark.parametrize("name", PRESETS)
def test_preset_runs_one_short_epoch(name):
    cfg, r = run_inprocess([f"experiment={name}", "trainer.epochs=1"])
    assert cfg.name == name
    assert r.status == "completed", r.metrics
    assert r.metrics["epochs_run"] == 1
    assert math.isfinite(r.history[0]["train_loss"])


@pytest.mark.slow
def test_lessons_script_quick(tmp_path):
    """scripts/lessons.py end to end on one preset, one epoch per run (~15 s)."""
    out = tmp_path / "docs" / "lessons.md"
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "lessons.py"), "--only",
                        "learning_rate", "--quick", "--runs", str(tmp_path / "runs"),
                        "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert "## 9. Learning rate" in text and "| lr | status |" in text
    assert "![learning_rate](lessons/learning_rate.png)" in text
    assert (out.parent / "lessons" / "learning_rate.png").read_bytes()[:4] == b"\x89PNG"
    assert "Not run yet" in text  # the other eight
