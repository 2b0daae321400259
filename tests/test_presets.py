"""The lesson presets of conf/experiment/ (vanishing, init, depth, activations, optimizers,
schedules, regularization, batch_size, learning_rate): each documents its command and claim,
carries its grid as hydra.sweeper.params (`runner -m experiment=NAME` runs it), every setting the
grid visits composes and validates, and each runs one short epoch; and the debug presets of
conf/debug/ do what their headers say."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose, run_inprocess

from runner.config import validate
from runner.help import conf_dir, header

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("lessons_script", ROOT / "scripts" / "lessons.py")
lessons = importlib.util.module_from_spec(_spec)
sys.modules["lessons_script"] = lessons  # dataclasses look their module up
_spec.loader.exec_module(lessons)

PRESETS = list(lessons.LESSONS)
RUNNER = [sys.executable, "-m", "runner"]


def test_the_nine_presets_exist():
    assert len(PRESETS) == 9
    for name in PRESETS:
        assert (conf_dir() / "experiment" / f"{name}.yaml").is_file(), name


@pytest.mark.parametrize("name", PRESETS)
def test_header_gives_command_claim_and_expectation(name):
    path = conf_dir() / "experiment" / f"{name}.yaml"
    assert path.read_text().splitlines()[0] == "# @package _global_"
    assert header(path).run == f"runner -m experiment={name}"
    p = lessons.read_preset(name)
    assert p.title and p.command_line == f"runner -m experiment={name}"
    assert len(p.claim) > 80 and len(p.should) > 40, "a Claim and a Should show paragraph"
    # the grid compares options: some key takes several values
    assert any("," in sweep for sweep in p.grid.values()), p.grid


@pytest.mark.parametrize("name", PRESETS)
def test_the_grid_is_the_composed_sweeper_params(name):
    """lessons.read_preset reads the grid from the composed config, not from a comment: it is
    what Hydra hands the sweeper (hydra.sweeper.params), and none of it is in the header."""
    params = compose([f"experiment={name}"], return_hydra_config=True).hydra.sweeper.params
    grid = lessons.read_preset(name).grid
    assert grid == {k: str(v) for k, v in params.items()}
    text = "\n".join(header(conf_dir() / "experiment" / f"{name}.yaml").notes)
    assert not any(f"{k}={v}" in text for k, v in grid.items())


@pytest.mark.parametrize("name", PRESETS)
def test_every_job_of_the_sweep_composes_and_validates(name):
    from runner.sweep.space import grid, parse_space

    p = lessons.read_preset(name)
    jobs = lessons.grid_jobs(p)
    # runner.sweep.space's expansion: the product of the values, the last key fastest
    expected = math.prod(len(v.split(",")) for v in p.grid.values())
    assert len(jobs) == expected >= 2
    first, last = ([f"{k}={v.split(',')[i]}" for k, v in p.grid.items()] for i in (0, -1))
    lower = [[o.lower() for o in job] for job in jobs]  # Hydra writes booleans as False, True
    assert lower[0] == [*first, f"experiment={name}"] and lower[-1] == [*last, f"experiment={name}"]
    assert jobs == [
        ov
        for ov, _ in grid(
            parse_space([f"{k}={v}" for k, v in p.grid.items()] + [f"experiment={name}"])
        )
    ]
    seen = set()
    for job in jobs:
        cfg = validate(compose(job))
        assert cfg.name == name
        if cfg.init.name != "normal":  # init.std is read by init=normal only
            cfg = dataclasses.replace(cfg, init=dataclasses.replace(cfg.init, std=0.0))
        seen.add(repr(cfg))
    # every job is a setting of its own, except init's zeros, Xavier and He, which run twice
    assert len(seen) == (5 if name == "init" else len(jobs))


def test_the_sweep_command_runs_the_grid_and_the_command_line_wins(tmp_path):
    """`runner -m experiment=NAME` plans the preset's grid; a sweep of one of its keys on the
    command line replaces that key's values (as in Hydra's basic sweeper), other keys add."""

    def dry(*args):
        p = subprocess.run(
            RUNNER
            + ["-m", *args, "hydra.sweeper.dry_run=true", f"hydra.sweep.dir={tmp_path / 'dry'}"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert p.returncode == 0, p.stderr
        return [
            line.split(": ", 1)[1].split()
            for line in p.stdout.splitlines()
            if line.startswith("job ")
        ]

    assert dry("experiment=vanishing") == lessons.grid_jobs(lessons.read_preset("vanishing"))
    jobs = dry("experiment=vanishing", "activation=relu,tanh", "seed=0,1")
    assert len(jobs) == 2 * 2 * 2
    assert {o for j in jobs for o in j if o.startswith("activation=")} == {
        "activation=relu",
        "activation=tanh",
    }
    assert {o for j in jobs for o in j if o.startswith("seed=")} == {"seed=0", "seed=1"}
    assert dry("experiment=learning_rate", "optimizer.lr=0.5") == [
        ["optimizer.lr=0.5", "experiment=learning_rate"]
    ]


@pytest.mark.parametrize("name", sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml")))
def test_preset_runs_one_short_epoch(name, tmp_path):
    """Every conf/experiment/ file (the lessons and the example) trains an epoch and writes its
    files; tests/test_runs.py's every-option test leaves this group to this one (one compile
    of each preset's programs, not two)."""
    from runner import app

    cfg, r = run_inprocess([f"experiment={name}", "trainer.epochs=1"])
    assert cfg.name == name or name not in PRESETS
    assert r.status == "completed", r.metrics
    assert r.metrics["epochs_run"] == 1
    assert math.isfinite(r.history[0]["train_loss"])
    assert math.isfinite(r.metrics["test_loss"])
    app.write_run(tmp_path, r, plot=False)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "completed"
    assert (tmp_path / "curves.csv").read_text().splitlines()[0].startswith("epoch,step,lr,")


def test_a_single_run_of_a_preset_ignores_its_grid(tmp_path):
    """`runner experiment=NAME` (no -m) is one run with the preset's own settings."""
    out = tmp_path / "run"
    p = subprocess.run(
        RUNNER + ["experiment=learning_rate", "debug=tiny", f"hydra.run.dir={out}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"
    cfg = (out / ".hydra" / "config.yaml").read_text()
    assert "name: learning_rate" in cfg and "  lr: 0.01\n" in cfg  # sgd's own, not the grid's
    assert not (tmp_path / "outputs").exists()


def test_debug_overfit_fits_two_batches():
    """debug=overfit on the default model: 100 epochs on the first 2 batches (128 examples),
    regularization off: it reaches 100% training accuracy on them, and metrics.json says so."""
    cfg, r = run_inprocess(
        ["debug=overfit", "regularization=dropout", "trainer.progress=false", "trainer.plot=false"],
        tiny=False,
    )
    assert (cfg.trainer.overfit_batches, cfg.regularization.dropout) == (2, 0.0)
    assert r.status == "completed" and r.metrics["epochs_run"] == 100
    assert r.metrics["steps_per_epoch"] == 2
    assert r.metrics["overfit_reached"] is True and r.metrics["overfit_train_acc"] == 1.0
    assert not any("overfit check failed" in w for w in r.metrics["warnings"])


@pytest.mark.slow
def test_lessons_script_quick(tmp_path):
    """scripts/lessons.py end to end on one preset, one epoch per run."""
    out = tmp_path / "docs" / "lessons.md"
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "lessons.py"),
            "--only",
            "learning_rate",
            "--quick",
            "--runs",
            str(tmp_path / "runs"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert "## 9. Learning rate" in text and "| lr | status |" in text
    assert "runner -m experiment=learning_rate\n# its grid" in text
    assert "optimizer.lr=0.0001,0.1,2,4" in text
    assert "![learning_rate](lessons/learning_rate.png)" in text
    assert (out.parent / "lessons" / "learning_rate.png").read_bytes()[:4] == b"\x89PNG"
    assert "Not run yet" in text  # the other eight
