"""How fast `runner compare` tabulates a big sweep: builds N synthetic run directories with the
files the runner writes (.hydra/config.yaml, overrides.yaml, hydra.yaml, metrics.json, a 20-epoch
curves.csv) in a temporary folder, then times the command in-process and as a subprocess
(median of 5 each) and prints the medians.

    .venv/bin/python benchmarks/compare_bench.py [--runs 1000] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "data": {
        "name": "digits",
        "task": "auto",
        "val_fraction": 0.15,
        "test_fraction": 0.15,
        "split_seed": 0,
        "preprocessing": "standardize",
        "max_samples": None,
    },
    "model": {"name": "mlp", "depth": 2, "width": 128, "widths": None, "head": "auto"},
    "activation": {"name": "relu"},
    "init": {"name": "auto", "bias": 0.0},
    "optimizer": {"name": "adam", "lr": 0.001, "b1": 0.9, "b2": 0.999, "eps": 1e-08},
    "schedule": {"name": "constant", "unit": "epoch", "warmup": 0, "warmup_start": 0.0},
    "regularization": {
        "l2": 0.0,
        "l1": 0.0,
        "weight_decay": 0.0,
        "penalize_bias_and_norm": False,
        "dropout": 0.0,
        "dropout_layers": None,
        "batchnorm": False,
        "batchnorm_position": "before",
        "batchnorm_momentum": 0.99,
        "batchnorm_eps": 1e-05,
        "clip_norm": None,
        "clip_value": None,
        "early_stopping": False,
        "patience": 10,
        "min_delta": 0.0,
    },
    "trainer": {
        "epochs": 20,
        "batch_size": 64,
        "drop_last": False,
        "monitor": "auto",
        "mode": "auto",
        "progress": False,
        "plot": True,
    },
    "seed": 0,
    "name": "run",
}
HYDRA_FILLER = "hydra:\n" + "".join(
    f"  key_{i}: 'some hydra setting number {i}'\n" for i in range(100)
)


def write_run(run_dir: Path, i: int, rng: random.Random, epochs: int = 20) -> None:
    opt = ("sgd", "adam", "nesterov", "rmsprop")[i % 4]
    lr = (0.001, 0.003, 0.01, 0.03, 0.1)[(i // 4) % 5]
    width = (32, 64, 128, 256, 512)[(i // 20) % 5]
    seed = (i // 100) % 10
    cfg = json.loads(json.dumps(CONFIG))
    cfg["optimizer"] = (
        {"name": opt, "lr": lr} if opt == "sgd" else dict(cfg["optimizer"], name=opt, lr=lr)
    )
    cfg["model"]["width"] = width
    cfg["seed"] = seed
    overrides = [f"optimizer={opt}", f"optimizer.lr={lr}", f"model.width={width}", f"seed={seed}"]
    hydra = run_dir / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (hydra / "hydra.yaml").write_text(HYDRA_FILLER)
    rows, acc = [], 0.1
    for ep in range(1, epochs + 1):
        acc = min(0.99, acc + rng.uniform(0, 0.1))
        rows.append(
            f"{ep},{ep * 20},{lr},{1.5 / ep:.6g},{acc:.6g},{1.6 / ep:.6g},"
            f"{acc - 0.02:.6g},{rng.uniform(0.5, 3):.6g},{ep * 0.05:.6g}"
        )
    (run_dir / "curves.csv").write_text(
        "epoch,step,lr,train_loss,train_acc,val_loss,val_acc,grad_norm,time\n"
        + "\n".join(rows)
        + "\n"
    )
    best = max(range(epochs), key=lambda e: float(rows[e].split(",")[6]))
    metrics = {
        "status": "completed",
        "task": "classification",
        "metric": "acc",
        "monitor": "val_acc",
        "mode": "max",
        "epochs": epochs,
        "epochs_run": epochs,
        "iterations": epochs * 20,
        "steps_per_epoch": 20,
        "batch_size": 64,
        "n_train": 1257,
        "n_val": 270,
        "n_test": 270,
        "best_epoch": best + 1,
        "stopped_early": False,
        "diverged_epoch": None,
        "best_val_acc": float(rows[best].split(",")[6]),
        "best_val_loss": 1.6 / (best + 1),
        "best_train_loss": 1.5 / (best + 1),
        "best_train_acc": acc,
        "final_train_loss": 1.5 / epochs,
        "final_train_acc": acc,
        "final_val_loss": 1.6 / epochs,
        "final_val_acc": acc - 0.02,
        "test_loss": 1.6 / epochs + rng.uniform(0, 0.1),
        "test_acc": acc - rng.uniform(0, 0.05),
        "eval_weights": "final",
        "params": 17_000 + width,
        "wall_time": rng.uniform(1, 5),
        "train_time": rng.uniform(0.5, 1),
        "compile_time": rng.uniform(0.5, 4),
    }
    assert all(not isinstance(v, float) or math.isfinite(v) for v in metrics.values())
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def build(root: Path, n: int) -> Path:
    rng = random.Random(0)
    sweep = root / "outputs" / "multirun" / "2026-01-01" / "12-00-00"
    for i in range(n):
        write_run(sweep / str(i), i, rng)
    (sweep / "multirun.yaml").write_text(HYDRA_FILLER)
    return root / "outputs"


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keep", metavar="DIR", help="build the runs in DIR and keep them")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from runner.compare.main import main as compare_main

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="compare-bench-"))
    try:
        t = time.perf_counter()
        outputs = build(tmp, args.runs)
        print(f"built {args.runs} runs in {time.perf_counter() - t:.1f}s under {outputs}")
        results = {}
        for fmt in ("table", "csv"):

            def inproc(fmt=fmt):
                with contextlib.redirect_stdout(io.StringIO()) as out:
                    assert compare_main(["compare", str(outputs), "--format", fmt]) == 0
                assert out.getvalue().count("\n") >= args.runs

            results[f"in-process, --format {fmt}"] = median_time(inproc, args.repeats)
        group = ["--group-by", "optimizer,optimizer.lr"]

        def grouped():
            with contextlib.redirect_stdout(io.StringIO()):
                assert compare_main(["compare", str(outputs), *group]) == 0

        results["in-process, --group-by optimizer,optimizer.lr"] = median_time(
            grouped, args.repeats
        )
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        commands = {
            "subprocess: python -m runner.compare.main": [
                sys.executable,
                "-m",
                "runner.compare.main",
            ]
        }
        script = Path(sys.executable).parent / "runner"
        probe = (
            subprocess.run(
                [str(script), "compare", "--help"], capture_output=True, text=True, env=env
            )
            if script.exists()
            else None
        )
        if probe is not None and probe.returncode == 0 and "--group-by" in probe.stdout:
            commands["subprocess: runner compare"] = [str(script), "compare"]
        for name, cmd in commands.items():

            def sub(cmd=cmd):
                p = subprocess.run(
                    cmd + [str(outputs)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                assert p.returncode == 0, p.stderr

            results[name] = median_time(sub, args.repeats)
        imp = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, time; t = time.perf_counter(); "
                "import runner.compare.main; print(time.perf_counter() - t, "
                "'jax' in sys.modules)",
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        t_import, jax_loaded = imp.stdout.split()
        print(f"median of {args.repeats}, {args.runs} runs:")
        for name, secs in results.items():
            print(f"  {name:48s} {secs:6.3f} s")
        print(
            f"  {'import runner.compare.main':48s} {float(t_import):6.3f} s (jax imported: "
            f"{jax_loaded})"
        )
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
