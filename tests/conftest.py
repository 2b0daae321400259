"""Shared fixtures: compose configs from conf/ in-process (one JAX process for the whole suite,
so compiled programs are shared) and tiny user data files."""

from __future__ import annotations

import gzip
import io
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite compiles ~100 small programs and runs each for a few steps: XLA's backend
# optimisations would cost more time than they save. Subprocesses inherit this too.
# Two CPU devices, as the `runner` command sets up on a 2-core machine
# (runner.runtime.host_devices): the in-process vmapped groups then shard their members too.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=2"
)

# The heaviest test files first (seconds of work each on a 2-core machine, 2026-12-05: test_runs
# ~280, test_sweep ~125, test_presets ~120, test_vectorized ~75): `-n 2 --dist loadfile` hands
# out whole files in collection order, so a heavy file collected late keeps one worker busy
# while the other has nothing left (the suite's tail). Within a file the order is unchanged.
HEAVY_FIRST = ("test_runs.py", "test_sweep.py", "test_presets.py", "test_vectorized.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))  # stable


# Small and fast: every in-process run uses at most this much data and one short epoch
# (conf/debug/tiny.yaml: one epoch, 120 examples, 16 units, no display or plots).
TINY = ["debug=tiny"]


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    # Generated datasets (MNIST-1D) are cached once for the session, not in the user's home.
    if "RUNNER_CACHE_DIR" not in os.environ:
        os.environ["RUNNER_CACHE_DIR"] = str(tmp_path_factory.mktemp("runner-cache"))
    os.environ.setdefault("RUNNER_JAX_CACHE", os.path.join(os.environ["RUNNER_CACHE_DIR"], "jax"))


def compose(overrides=(), return_hydra_config=False):
    from runner.help import compose as compose_conf

    return compose_conf(overrides, return_hydra_config=return_hydra_config)


def run_inprocess(overrides=(), tiny=True):
    """Compose, validate, load and fit; returns (Config, Result)."""
    from runner.app import run
    from runner.config import validate
    from runner.data import load_dataset
    from runner.datasets import cache_in

    cfg = validate(compose((TINY if tiny else []) + list(overrides)))
    with cache_in(cfg.paths):  # as runner.task loads it
        ds = load_dataset(cfg.data)
    return cfg, run(cfg, ds)


def task_config(overrides, run_dir: Path, cwd: Path):
    """The config runner.task.task gets from Hydra for a single run into `run_dir` started in
    `cwd`: composed, HydraConfig set, .hydra/config.yaml written; without its hydra node."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    from runner.rundir import CONFIG

    cfg = compose(list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.runtime.cwd = str(cwd)
        cfg.hydra.mode = RunMode.RUN
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / CONFIG)
    return cfg


def run_main(args, cwd=None):
    """`runner compare|best|plot ARGS` in-process (runner.compare.main.main): (exit code,
    stdout, stderr)."""
    from runner.compare.main import main

    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr, os.getcwd()
    sys.stdout, sys.stderr = out, err
    try:
        if cwd:
            os.chdir(cwd)
        code = main(list(args))
    finally:
        sys.stdout, sys.stderr = old[0], old[1]
        os.chdir(old[2])
    return code, out.getvalue(), err.getvalue()


def write_idx(folder: Path, n_train=60, n_test=20, gz=False):
    """Tiny MNIST-format IDX files (28x28 images with the label painted in)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, lab in enumerate(labels):
            images[i, 2 * lab : 2 * lab + 6, 4:24] = 255
        files = {
            f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes(),
            f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, n) + labels.tobytes(),
        }
        for name, blob in files.items():
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(blob))
            else:
                (folder / name).write_bytes(blob)
    return folder


@pytest.fixture(scope="session")
def user_files(tmp_path_factory):
    """A CSV, an NPZ and an IDX folder for the user-data loaders."""
    d = tmp_path_factory.mktemp("userdata")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    lines = ["a,b,c,label"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{t}" for r, t in zip(x, y)]
    (d / "data.csv").write_text("\n".join(lines) + "\n")
    np.savez(d / "data.npz", x=x.astype(np.float32), y=y)
    write_idx(d / "idx")
    return {
        "csv": [f"data.path={d / 'data.csv'}", "data.target=label"],
        "npz": [f"data.path={d / 'data.npz'}"],
        "idx": [f"data.path={d / 'idx'}"],
    }
