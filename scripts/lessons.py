#!/usr/bin/env python
"""Regenerate docs/lessons.md: the course notes' claims, checked by real runs of the nine presets in
conf/experiment/ (vanishing, init, depth, activations, optimizers, schedules, regularization,
batch_size, learning_rate).

For each preset the script reads its YAML header through runner.help.header (the title; `# run:
runner -m experiment=NAME`; `# Claim ...` and `# Should show: ...` paragraphs) and its grid from
the composed config (hydra.sweeper.params, expanded by runner.sweep.space as the sweeper does),
runs the sweep with the `runner` command into outputs/lessons/<name>/, reads the run directories
(metrics.json, curves.csv, diagnostics.csv, best_params.npz, .hydra/), and writes one section per
preset: the claim, the command and its grid, a table of the real numbers, a verdict line (do the
numbers support the claim?) and a plot docs/lessons/<name>.png.

    .venv/bin/python scripts/lessons.py                  # all nine (docs/lessons.md: how long)
    .venv/bin/python scripts/lessons.py --only init      # rerun one; the others are re-read
    .venv/bin/python scripts/lessons.py --reuse          # no training: rebuild from outputs/lessons
    .venv/bin/python scripts/lessons.py --quick --out /tmp/l.md   # 1 epoch each (a smoke test)

Sweeps run with trainer.progress=false trainer.plot=false and, except batch_size (whose wall
times are part of the lesson), XLA_FLAGS=--xla_backend_optimization_level=0: these small
programs spend far more time compiling than running. Activation statistics "at initialization"
(init, depth) come from a forward pass of each run's own config and seed in this process
(runner.core.train.activation_pass); without JAX they fall back to diagnostics.csv's first epoch.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LESSONS = (
    "vanishing",
    "init",
    "depth",
    "activations",
    "optimizers",
    "schedules",
    "regularization",
    "batch_size",
    "learning_rate",
)
FAST_XLA = "--xla_backend_optimization_level=0"
TIMED = ("batch_size",)  # presets whose wall times are reported: default XLA flags
LOSS_THRESHOLD = 0.1  # activations, optimizers: epochs to bring the train loss under


# ---------------------------------------------------------------------------------------------
# presets and run directories


@dataclass
class Preset:
    name: str
    title: str
    command_line: str  # the `# run:` line: runner -m experiment=NAME
    grid: dict  # hydra.sweeper.params of the composed preset: {key: sweep}
    claim: str
    should: str
    source: str = ""  # "(notes 002, 003)" after the word Claim

    @property
    def grid_line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.grid.items())


def read_preset(name: str) -> Preset:
    from omegaconf import OmegaConf

    from runner.help import compose, conf_dir, header  # the package's runner/conf

    path = conf_dir() / "experiment" / f"{name}.yaml"
    head = header(path)
    if head.run != f"runner -m experiment={name}":
        raise SystemExit(
            f"{path}: line 3 must be '# run: runner -m experiment={name}' (the grid "
            f"is the preset's hydra.sweeper.params)"
        )
    params = compose([f"experiment={name}"], return_hydra_config=True).hydra.sweeper.params
    grid = OmegaConf.to_container(params) if params else {}
    if not grid:
        raise SystemExit(f"{path}: no hydra.sweeper.params: a lesson needs a grid to compare")
    paragraphs, current, source = {}, None, ""
    for line in head.notes:
        m = re.match(r"(Claim|Should show)\b([^:]*):\s*(.*)", line)
        if m:
            current = m.group(1)
            paragraphs[current] = [m.group(3)]
            if current == "Claim":
                source = m.group(2).strip()
        elif current:
            paragraphs[current].append(line)
    return Preset(
        name,
        head.description,
        head.run,
        {str(k): str(v) for k, v in grid.items()},
        " ".join(paragraphs.get("Claim", [])).strip(),
        " ".join(paragraphs.get("Should show", [])).strip(),
        source,
    )


def grid_jobs(preset: Preset) -> list[list[str]]:
    """The overrides of every run of `runner -m experiment=NAME`: the sweeper's arguments (its
    params, then the command line's) expanded by runner.sweep.space, as the sweeper expands them."""
    from runner.sweep.space import grid, parse_space

    arguments = [f"{k}={v}" for k, v in preset.grid.items()] + [f"experiment={preset.name}"]
    return [overrides for overrides, _ in grid(parse_space(arguments))]


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


@dataclass
class Job:
    path: Path
    overrides: dict
    cfg: dict
    metrics: dict
    curves: list
    diag: list | None
    extra: dict = field(default_factory=dict)

    def m(self, key, default=None):
        v = self.metrics.get(key, default)
        return default if v is None else v

    def o(self, key, default=None):
        """An override's value (the swept settings), else the composed config's."""
        if key in self.overrides:
            return self.overrides[key]
        node = self.cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def diag_at(self, epoch: int) -> dict:
        """layer -> diagnostics row for one epoch ({} without diagnostics.csv)."""
        return {r["layer"]: r for r in (self.diag or []) if int(r["epoch"]) == epoch}

    def curve(self, key) -> list:
        return [r.get(key, math.nan) for r in self.curves]


def load_sweep(folder: Path) -> list[Job]:
    """The sweep's run folders, read through runner.rundir; a damaged one is left out with a
    warning naming its file."""
    from runner import rundir

    jobs = []
    dirs = [p for p in folder.iterdir() if p.is_dir() and (p / rundir.METRICS).is_file()]
    for d in sorted(
        dirs, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]
    ):
        reads = {
            name: read(d)
            for name, read in (
                ("metrics", rundir.read_metrics),
                ("overrides", rundir.read_overrides),
                ("config", lambda r: rundir.read_config(r, flat=False)),
                ("curves", rundir.read_curves),
                ("diag", rundir.read_diagnostics),
            )
        }
        damaged = [r.error for r in reads.values() if r.error]
        if damaged:
            print(f"lessons: warning: {d}: left out, {'; '.join(damaged)}", file=sys.stderr)
            continue
        overrides = {}
        for item in reads["overrides"].data or []:
            key, _, value = item.partition("=")
            overrides[key.lstrip("+~")] = value
        curves = reads["curves"].data.rows if reads["curves"].ok else []
        diag = reads["diag"].data if reads["diag"].ok else None
        jobs.append(
            Job(d, overrides, reads["config"].data or {}, reads["metrics"].data, curves, diag)
        )
    return jobs


def run_preset(preset: Preset, runs: Path, quick: bool, log) -> float:
    """Run the preset's sweep into runs/NAME (replacing an earlier one); returns the wall time."""
    t0 = time.perf_counter()
    folder = runs / preset.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if preset.name not in TIMED:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + FAST_XLA).strip()
    cmd = [
        sys.executable,
        "-m",
        "runner",
        "-m",
        f"experiment={preset.name}",
        f"hydra.sweep.dir={folder}",
        "trainer.progress=false",
        "trainer.plot=false",
    ]
    if quick:
        cmd.append("trainer.epochs=1")
    log(f"  $ runner {' '.join(shlex.quote(a) for a in cmd[3:])}   # {len(grid_jobs(preset))} runs")
    logfile = folder.parent / f"{folder.name}.log"
    with open(logfile, "w") as out:
        p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        tail = logfile.read_text(errors="replace").strip().splitlines()[-5:]
        raise SystemExit(
            f"lessons: {preset.name}: the sweep failed (exit code "
            f"{p.returncode}); see {logfile}:\n" + "\n".join(tail)
        )
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# numbers computed here: activation statistics at initialization, unit symmetry

_DATASETS: dict = {}


def init_activations(job: Job) -> dict | None:
    """layer -> {std, mean, saturated} of the run's model at initialization (its config and
    seed), from an evaluation-mode pass over the first 256 training examples; None if JAX or
    the runner's internals are unavailable."""
    try:
        import jax

        from runner.app import prepare
        from runner.config import validate
        from runner.core import layerstats as diagnostics
        from runner.core import train
        from runner.data import load_dataset

        cfg = validate(job.cfg)
        key = repr(cfg.data)
        if key not in _DATASETS:
            _DATASETS[key] = load_dataset(cfg.data)
        spec, hp, data = prepare(cfg, _DATASETS[key])
        state = train.init_state(spec, hp, jax.random.PRNGKey(cfg.seed), data)
        out = jax.device_get(train.activation_pass(spec, state, data, hp))
        names = diagnostics.layer_names(state.params)
        return {
            n: {
                "std": float(out["act_std"][i]),
                "mean": float(out["act_mean"][i]),
                "saturated": float(out["saturated_frac"][i]),
            }
            for i, n in enumerate(names)
            if n.startswith("layer")
        }
    except Exception as e:  # noqa: BLE001 - fall back to diagnostics.csv
        print(
            f"lessons: warning: activations at initialization unavailable ({e}); using "
            f"diagnostics.csv's first epoch",
            file=sys.stderr,
        )
        return None


def activation_profile(job: Job) -> tuple[dict, str]:
    """(layer -> stats, where they come from)."""
    stats = init_activations(job)
    if stats is not None:
        return stats, "at initialization"
    rows = job.diag_at(1)
    return (
        {
            n: {"std": r["act_std"], "mean": r["act_mean"], "saturated": r["saturated_frac"]}
            for n, r in rows.items()
            if n.startswith("layer")
        },
        "after epoch 1",
    )


def unit_spread(job: Job, layer: str = "layer0") -> float | None:
    """max over inputs k of (max_j W[k, j] - min_j W[k, j]) for the hidden units j of `layer`
    (kernel and bias) in best_params.npz: 0 exactly when all its units are identical."""
    from runner import rundir

    if not rundir.has_best(job.path):
        return None
    import numpy as np

    try:
        params, _ = rundir.load_best(job.path)
    except rundir.RunDirError as e:
        print(f"lessons: warning: {e}", file=sys.stderr)
        return None
    dense = params.get(layer, {}).get("dense", {})
    kernel, bias = dense.get("kernel"), dense.get("bias")
    if kernel is None:
        return None
    w = np.vstack([kernel, bias[None, :]]) if bias is not None else kernel
    return float(np.max(w.max(axis=1) - w.min(axis=1)))


# ---------------------------------------------------------------------------------------------
# formatting


def fmt(v, spec=".3f", none="–"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    if isinstance(v, str):
        return v
    if spec == "e":
        return f"{v:.1e}"
    if spec == "%":
        return f"{100 * v:.1f}%"
    return format(v, spec)


def table(headers: list, rows: list) -> str:
    out = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---" if i == 0 else "--:" for i in range(len(headers))) + " |",
    ]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def epochs_to(job: Job, key: str, threshold: float):
    for r in job.curves:
        v = r.get(key)
        if isinstance(v, float) and v < threshold:
            return int(r["epoch"])
    return None


def hidden_layers(rows: dict) -> list:
    return sorted((n for n in rows if n.startswith("layer")), key=lambda n: int(n[5:]))


@dataclass
class Section:
    table: str
    verdict: str
    notes: list = field(default_factory=list)


def _plt():
    import warnings

    warnings.filterwarnings("ignore", message="No artists with labels")
    from runner.plots import pyplot

    return pyplot({"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7, "figure.dpi": 100})


def _save(fig, png: Path):
    from runner.plots import save_png

    png.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, png, tight=True)


def _check(ok: bool, claim: str) -> str:
    return ("supported" if ok else "not supported") + f": {claim}"


def verdict(parts: list[tuple[bool, str]]) -> str:
    if not parts:
        return "**No verdict**: the numbers it needs are missing (diagnostics.csv?)."
    ok = sum(bool(p) for p, _ in parts)
    word = (
        "**Supported.**"
        if ok == len(parts)
        else "**Partly supported.**"
        if ok
        else "**Not supported.**"
    )
    return f"{word} " + "; ".join(("✔ " if p else "✘ ") + text for p, text in parts) + "."


def by(jobs, **settings):
    for j in jobs:
        if all(str(j.o(k)).lower() == str(v).lower() for k, v in settings.items()):
            return j
    return None


# ---------------------------------------------------------------------------------------------
# the nine analyses: (jobs, png) -> Section


def _bn(j: Job) -> bool:
    return str(j.o("regularization.batchnorm")).lower() == "true"


def anchor(i: int, title: str) -> str:
    """GitHub's anchor of the heading '## {i}. {title}'."""
    return f"{i}-" + re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def grad_norms(job: Job, epoch: int = 1):
    rows = job.diag_at(epoch)
    if not rows:
        return None
    layers = hidden_layers(rows)
    return {n: rows[n]["grad_norm"] for n in layers + ["head"] if n in rows}


def lesson_vanishing(jobs, png):
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    rows = []
    for j in jobs:
        label = j.o("activation.name") + (" + BN" if _bn(j) else "")
        g = grad_norms(j)
        if g:
            layers = [n for n in g if n != "head"]
            a1.semilogy(range(len(g)), list(g.values()), marker="o", ms=3, label=label)
            first, last, head = g[layers[0]], g[layers[-1]], g["head"]
        else:
            first = last = head = None
        a2.plot(j.curve("epoch"), j.curve("val_acc"), label=label)
        j.extra["ratio"] = first / head if g and head else None
        rows.append(
            [
                label,
                fmt(first, "e"),
                fmt(last, "e"),
                fmt(head, "e"),
                fmt(j.extra["ratio"], "e"),
                fmt(j.curves[0]["val_acc"] if j.curves else None),
                fmt(j.m("best_val_acc")),
                fmt(j.m("test_acc")),
            ]
        )
    a1.set(
        title="gradient norm per layer, epoch 1",
        xlabel="layer (0 = input side, last = head)",
        ylabel="mean ||grad||",
    )
    a2.set(title="validation accuracy", xlabel="epoch", ylim=(0, 1))
    a1.legend(), a2.legend()
    _save(fig, png)
    sig, relu = (
        by(jobs, **{"activation.name": "sigmoid", "regularization.batchnorm": False}),
        by(jobs, **{"activation.name": "relu", "regularization.batchnorm": False}),
    )
    bns = [j for j in jobs if _bn(j)]
    parts = []
    if sig and relu and sig.extra["ratio"] is not None and relu.extra["ratio"] is not None:
        parts.append(
            (
                sig.extra["ratio"] < 1e-3 and relu.extra["ratio"] > 1e-1,
                f"layer0/head gradient ratio {fmt(sig.extra['ratio'], 'e')} for sigmoid vs "
                f"{fmt(relu.extra['ratio'], 'e')} for ReLU",
            )
        )
        parts.append(
            (
                sig.m("best_val_acc", 0) < 0.3 <= 0.9 < relu.m("best_val_acc", 0),
                f"sigmoid best validation accuracy {fmt(sig.m('best_val_acc'))} vs ReLU "
                f"{fmt(relu.m('best_val_acc'))}",
            )
        )
    if bns and all(j.extra["ratio"] is not None for j in bns):
        worst = min(bns, key=lambda j: j.extra["ratio"])
        low = min(j.m("best_val_acc", 0) for j in bns)
        parts.append(
            (
                worst.extra["ratio"] > 1e-1 and low > 0.9,
                f"with batch norm every net keeps layer0/head ≥ "
                f"{fmt(worst.extra['ratio'], 'e')} and reaches ≥ {fmt(low)} validation "
                f"accuracy",
            )
        )
    return Section(
        table(
            [
                "activation",
                "‖g‖ layer0",
                "‖g‖ last hidden",
                "‖g‖ head",
                "layer0/head",
                "val acc ep 1",
                "best val acc",
                "test acc",
            ],
            rows,
        ),
        verdict(parts),
        ["gradient norms: diagnostics.csv, mean over the first epoch's steps"],
    )


INIT_LABELS = {
    "zeros": "zeros",
    "glorot_normal": "Xavier (glorot_normal)",
    "xavier_normal": "Xavier (glorot_normal)",
    "he_normal": "He (he_normal)",
}


def init_label(j: Job) -> str:
    name = j.o("init.name") if "init" not in j.overrides else j.overrides["init"]
    if name == "normal":
        return f"normal({_num(j.o('init.std')):g})"
    return INIT_LABELS.get(name, name)


def lesson_init(jobs, png):
    # The grid crosses init.std with every init, but only init=normal reads it: the other inits'
    # two runs are the same run; each setting is shown once.
    first: dict = {}
    for j in jobs:
        first.setdefault(init_label(j), j)
    jobs = list(first.values())
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    rows, where = [], ""
    for j in jobs:
        prof, where = activation_profile(j)
        layers = hidden_layers(prof)
        stds = [prof[n]["std"] for n in layers]
        j.extra.update(stds=stds, sat=[prof[n]["saturated"] for n in layers], spread=unit_spread(j))
        label = init_label(j)
        if stds:
            a1.semilogy(
                range(len(stds)),
                [max(s, 1e-12) for s in stds],
                marker="o",
                ms=3,
                label=label + (" (std 0: drawn at 1e-12)" if max(stds) == 0 else ""),
            )
        a2.plot(j.curve("epoch"), j.curve("val_acc"), label=label)
        mid = len(stds) // 2
        rows.append(
            [
                label,
                *(fmt(stds[i] if stds else None, ".2e") for i in (0, mid, -1)),
                fmt(j.extra["sat"][-1] if stds else None, "%"),
                fmt(j.extra["spread"], ".3g"),
                fmt(j.m("final_train_loss")),
                fmt(j.m("best_val_acc")),
                fmt(j.m("test_acc")),
            ]
        )
    a1.set(
        title=f"activation std per hidden layer, {where}",
        xlabel="hidden layer",
        ylabel="std of tanh outputs",
    )
    a2.set(title="validation accuracy", xlabel="epoch", ylim=(0, 1))
    a1.legend(), a2.legend()
    _save(fig, png)
    z, small = by(jobs, **{"init.name": "zeros"}), None
    big = None
    for j in jobs:
        if j.o("init.name") == "normal":
            if float(j.o("init.std")) < 0.1:
                small = j
            else:
                big = j
    xav = next((j for j in jobs if j.o("init.name") in ("glorot_normal", "xavier_normal")), None)
    parts = []
    if z and z.extra["spread"] is not None:
        parts.append(
            (
                z.extra["spread"] == 0 and z.m("best_val_acc", 1) < 0.2,
                f"zeros: after training max |w_i - w_j| over layer 0's units = "
                f"{z.extra['spread']:g} (identical units) and validation accuracy "
                f"{fmt(z.m('best_val_acc'))}",
            )
        )
    if small and small.extra["stds"]:
        s = small.extra["stds"]
        parts.append(
            (
                s[-1] < 1e-3 * s[0],
                f"normal(0.01): activation std {s[0]:.2g} in layer 0 "
                f"→ {s[-1]:.2g} in the last hidden layer",
            )
        )
    if big and big.extra["stds"]:
        parts.append(
            (
                min(big.extra["sat"]) > 0.5,
                f"normal(1): {100 * min(big.extra['sat']):.0f}–"
                f"{100 * max(big.extra['sat']):.0f}% of the tanh units saturated per layer",
            )
        )
    if xav and xav.extra["stds"]:
        s = xav.extra["stds"]
        parts.append(
            (
                0.1 < s[-1] / s[0] < 10 and xav.m("best_val_acc", 0) > 0.9,
                f"Xavier: std {s[0]:.2g} → {s[-1]:.2g} across the layers, validation "
                f"accuracy {fmt(xav.m('best_val_acc'))}",
            )
        )
    return Section(
        table(
            [
                "init",
                "act std layer0",
                f"layer{len(jobs[0].extra['stds']) // 2}",
                "last hidden",
                "saturated (last)",
                "max |w_i − w_j| layer0",
                "final train loss",
                "best val acc",
                "test acc",
            ],
            rows,
        ),
        verdict(parts),
        [
            f"activation statistics {where}, on 256 training examples; "
            f"max |w_i − w_j| from best_params.npz after training"
        ],
    )


def lesson_depth(jobs, png):
    plt = _plt()
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(12, 3.6))
    rows, where = [], ""
    for j in jobs:
        prof, where = activation_profile(j)
        layers = hidden_layers(prof)
        stds = [prof[n]["std"] for n in layers]
        g = grad_norms(j)
        j.extra.update(stds=stds, g=g)
        label = init_label(j)
        a1.semilogy(range(len(stds)), [max(s, 1e-12) for s in stds], marker=".", label=label)
        if g:
            a2.semilogy(range(len(g)), list(g.values()), marker=".", label=label)
        a3.plot(j.curve("epoch"), j.curve("val_acc"), label=label)
        rows.append(
            [
                label,
                fmt(stds[0] if stds else None, ".2e"),
                fmt(stds[-1] if stds else None, ".2e"),
                fmt(g["layer0"] if g else None, "e"),
                fmt(g["head"] if g else None, "e"),
                fmt(j.m("final_train_loss")),
                fmt(j.m("best_val_acc")),
                fmt(j.m("test_acc")),
            ]
        )
    a1.set(title=f"activation std per layer, {where}", xlabel="hidden layer")
    a2.set(title="gradient norm per layer, epoch 1", xlabel="layer (last = head)")
    a3.set(title="validation accuracy", xlabel="epoch", ylim=(0, 1))
    for a in (a1, a2, a3):
        a.legend()
    _save(fig, png)
    glo = next((j for j in jobs if j.o("init.name") in ("glorot_normal", "xavier_normal")), None)
    he = next((j for j in jobs if j.o("init.name") in ("he_normal", "kaiming_normal")), None)
    parts = []
    if glo and he and glo.extra["stds"] and he.extra["stds"]:
        rg = glo.extra["stds"][-1] / glo.extra["stds"][0]
        rh = he.extra["stds"][-1] / he.extra["stds"][0]
        parts.append(
            (
                rg < 1e-2 and 0.1 < rh < 10,
                f"last/first hidden activation std {rg:.1e} with Glorot vs {rh:.2g} with He",
            )
        )
        parts.append(
            (
                he.m("best_val_acc", 0) > 0.8 and glo.m("best_val_acc", 1) < 0.2,
                f"best validation accuracy {fmt(glo.m('best_val_acc'))} (Glorot) vs "
                f"{fmt(he.m('best_val_acc'))} (He)",
            )
        )
    return Section(
        table(
            [
                "init",
                "act std layer0",
                "act std layer29",
                "‖g‖ layer0 (ep 1)",
                "‖g‖ head (ep 1)",
                "final train loss",
                "best val acc",
                "test acc",
            ],
            rows,
        ),
        verdict(parts),
    )


RELU_FAMILY = ("relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "swish")


def lesson_activations(jobs, png):
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    rows = []
    from_spec = {
        "identity": "glorot_normal",
        "tanh": "glorot_normal",
        "sigmoid": "glorot_normal",
        "selu": "lecun_normal",
    }
    for j in jobs:
        act = j.o("activation.name")
        j.extra["to"] = epochs_to(j, "train_loss", LOSS_THRESHOLD)
        init = j.o("init.name")
        if init == "auto":
            init = from_spec.get(act, "he_normal")
        a1.semilogy(j.curve("epoch"), j.curve("train_loss"), label=act)
        a2.plot(j.curve("epoch"), j.curve("val_acc"), label=act)
        rows.append(
            [
                act,
                init,
                fmt(j.extra["to"], "d", none=f"> {j.m('epochs_run')}"),
                fmt(j.curves[0]["train_loss"] if j.curves else None),
                fmt(j.m("final_train_loss")),
                fmt(j.m("best_val_acc")),
                fmt(j.m("test_acc")),
            ]
        )
    a1.axhline(LOSS_THRESHOLD, color="grey", lw=0.8, ls=":")
    a1.set(title="training loss", xlabel="epoch")
    a2.set(title="validation accuracy", xlabel="epoch", ylim=(0, 1))
    a1.legend(ncol=2), a2.legend(ncol=2)
    _save(fig, png)
    big = 10**6
    e = {j.o("activation.name"): (j.extra["to"] or big) for j in jobs}
    parts = []
    fam = [e[a] for a in RELU_FAMILY if a in e]
    if "sigmoid" in e and "tanh" in e and fam:
        fam_med = sorted(fam)[len(fam) // 2]
        show = lambda v: "never" if v == big else str(v)
        parts.append(
            (
                e["sigmoid"] > e["tanh"],
                f"epochs to training loss < {LOSS_THRESHOLD}: sigmoid {show(e['sigmoid'])}, "
                f"tanh {show(e['tanh'])}",
            )
        )
        parts.append(
            (
                fam_med < e["tanh"],
                f"the ReLU family and gelu/swish take {min(fam)}–{max(fam)} epochs "
                f"(median {fam_med}), faster than tanh",
            )
        )
    return Section(
        table(
            [
                "activation",
                "init (auto)",
                f"epochs to train loss < {LOSS_THRESHOLD}",
                "train loss ep 1",
                "final train loss",
                "best val acc",
                "test acc",
            ],
            rows,
        ),
        verdict(parts),
    )


def _rank_key(j: Job):
    """Best first: the monitored metric (val acc: higher is better, rundir.higher_is_better),
    ties broken by lower val loss; runs without it last."""
    from runner.rundir import higher_is_better

    monitor = j.m("monitor", "val_acc")
    v = j.m(f"best_{monitor}")
    sign = -1 if higher_is_better(monitor) else 1
    return (v is None, sign * v if v is not None else 0.0, j.m("best_val_loss", math.inf))


def lesson_optimizers(jobs, png):
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    order, lrs = [], []
    for j in jobs:
        o, lr = j.o("optimizer.name"), float(j.o("optimizer.lr"))
        if o not in order:
            order.append(o)
        if lr not in lrs:
            lrs.append(lr)
    lrs.sort()
    rows, tuned = [], {}
    for o in order:
        mine = [j for j in jobs if j.o("optimizer.name") == o]
        ok = [j for j in mine if j.metrics.get("status") == "completed"]
        best = min(ok, key=_rank_key) if ok else None
        tuned[o] = best
        cells = []
        for lr in lrs:
            j = next((j for j in mine if float(j.o("optimizer.lr")) == lr), None)
            if j is None:
                cells.append("")
            elif j.metrics.get("status") != "completed":
                cells.append("div")
            else:
                c = fmt(j.m("best_val_acc"), ".2f")
                cells.append(f"**{c}**" if j is best else c)
        if best is None:
            rows.append([o, "–", *cells, "–", "–", "–", "–"])
            continue
        a1.semilogy(
            best.curve("epoch"),
            best.curve("train_loss"),
            label=f"{o} (lr {float(best.o('optimizer.lr')):g})",
        )
        best.extra["to"] = epochs_to(best, "train_loss", LOSS_THRESHOLD)
        rows.append(
            [
                o,
                f"{float(best.o('optimizer.lr')):g}",
                *cells,
                fmt(best.curves[0]["train_loss"]),
                fmt(best.m("final_train_loss")),
                fmt(best.extra["to"], "d", none=f"> {best.m('epochs_run')}"),
                fmt(best.m("test_acc")),
            ]
        )
        accs = [
            next(
                (
                    j.m("best_val_acc", 0) if j.metrics.get("status") == "completed" else 0
                    for j in mine
                    if float(j.o("optimizer.lr")) == lr
                ),
                math.nan,
            )
            for lr in lrs
        ]
        a2.semilogx(lrs, accs, marker="o", ms=3, label=o)
    a1.axhline(LOSS_THRESHOLD, color="grey", lw=0.8, ls=":")
    a1.set(title="training loss at each optimizer's tuned lr", xlabel="epoch")
    a2.set(title="the lr search: best validation accuracy", xlabel="learning rate", ylim=(0, 1))
    a1.legend(ncol=2), a2.legend(ncol=2)
    _save(fig, png)
    parts = []
    t = {o: j for o, j in tuned.items() if j is not None}
    if "sgd" in t:
        faster = [
            o
            for o in ("momentum", "nesterov", "adagrad", "rmsprop", "adam", "nadam")
            if o in t and (t[o].extra["to"] or 10**6) <= (t["sgd"].extra["to"] or 10**6)
        ]
        lrs_won = {o: float(j.o("optimizer.lr")) for o, j in t.items()}
        parts.append(
            (
                len(set(lrs_won.values())) > 2,
                "the tuned lr differs by optimizer: "
                + ", ".join(f"{o} {lr:g}" for o, lr in lrs_won.items()),
            )
        )
        parts.append(
            (
                len(faster) >= 5,
                f"at the tuned lr, {len(faster)} of momentum/nesterov/adagrad/rmsprop/adam/"
                f"nadam reach training loss < {LOSS_THRESHOLD} no later than plain sgd "
                f"(epoch {fmt(t['sgd'].extra['to'], 'd', none='never')})",
            )
        )
        accs = {o: j.m("best_val_acc", 0) for o, j in t.items()}
        parts.append(
            (
                min(a for o, a in accs.items() if o != "adadelta") > 0.9,
                "tuned best validation accuracy "
                + ", ".join(f"{o} {a:.3f}" for o, a in accs.items()),
            )
        )
    headers = [
        "optimizer",
        "tuned lr",
        *(f"lr {lr:g}" for lr in lrs),
        "train loss ep 1",
        "final train loss",
        f"epochs to < {LOSS_THRESHOLD}",
        "test acc",
    ]
    return Section(
        table(headers, rows),
        verdict(parts),
        [
            "lr columns: best validation accuracy of each run of the grid (bold: the "
            "tuned one, ties broken by validation loss; div: diverged)"
        ],
    )


def lesson_schedules(jobs, png):
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    rows = []
    for j in jobs:
        s = j.o("schedule.name")
        a1.plot(j.curve("epoch"), j.curve("lr"), label=s)
        a2.semilogy(j.curve("epoch"), j.curve("train_loss"), label=s)
        tl = j.curve("train_loss")
        rows.append(
            [
                s,
                fmt(j.curves[0]["lr"] if j.curves else None, ".3g"),
                fmt(j.curves[-1]["lr"] if j.curves else None, ".3g"),
                fmt(min(tl) if tl else None),
                fmt(j.m("final_train_loss")),
                fmt(j.m("best_val_acc")),
                fmt(j.m("test_acc")),
            ]
        )
    a1.set(title="learning rate (each epoch's first update)", xlabel="epoch")
    a2.set(title="training loss", xlabel="epoch")
    a1.legend(ncol=2), a2.legend(ncol=2)
    _save(fig, png)
    c = by(jobs, **{"schedule.name": "constant"})
    parts = []
    if c:
        decay = [j for j in jobs if j.o("schedule.name") in ("step", "time_based", "cosine")]
        lower = [
            j.o("schedule.name")
            for j in decay
            if j.m("final_train_loss", 9) < c.m("final_train_loss", 0)
        ]
        parts.append(
            (
                bool(decay) and len(lower) == len(decay),
                f"final training loss {fmt(c.m('final_train_loss'))} with a constant lr; "
                + ", ".join(
                    f"{j.o('schedule.name')} {fmt(j.m('final_train_loss'))}"
                    for j in jobs
                    if j is not c
                ),
            )
        )
        tl = c.curve("train_loss")
        bumps = sum(1 for a, b in zip(tl, tl[1:]) if b > a)
        parts.append(
            (
                bumps >= 2,
                f"the constant-lr training loss goes up in {bumps} of "
                f"{len(tl) - 1} epochs (it bounces)",
            )
        )
    return Section(
        table(
            [
                "schedule",
                "lr epoch 1",
                "lr last epoch",
                "min train loss",
                "final train loss",
                "best val acc",
                "test acc",
            ],
            rows,
        ),
        verdict(parts),
    )


def reg_label(j: Job) -> str:
    r = j.cfg.get("regularization", {})
    parts = []
    if r.get("dropout"):
        parts.append(f"dropout {r['dropout']:g}")
    if r.get("early_stopping"):
        parts.append(f"early stopping (patience {r['patience']})")
    if r.get("batchnorm"):
        parts.append("batch norm")
    if r.get("l2"):
        parts.append(f"L2 {r['l2']:g}")
    return " + ".join(parts) or "none"


def lesson_regularization(jobs, png):
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    rows = []
    for j in jobs:
        best_w = j.m("eval_weights") == "best"
        val = j.m("best_val_acc") if best_w else j.m("final_val_acc")
        train = j.m("train_metric_eval")
        j.extra["gap"] = train - val if train is not None and val is not None else None
        j.extra["label"] = reg_label(j)
        a1.plot(j.curve("epoch"), j.curve("val_loss"), label=j.extra["label"], lw=1)
        rows.append(
            [
                j.extra["label"],
                fmt(train),
                fmt(val),
                fmt(j.extra["gap"]),
                fmt(j.m("best_val_loss")),
                fmt(j.m("final_val_loss")),
                f"{j.m('epochs_run')}" + (" (stopped)" if j.m("stopped_early") else ""),
                fmt(j.m("test_acc")),
            ]
        )
    labels = [j.extra["label"] for j in jobs]
    a2.barh(range(len(jobs)), [j.extra["gap"] or 0 for j in jobs], color="tab:red")
    a2.set_yticks(range(len(jobs)), labels)
    a2.invert_yaxis()
    a1.set(title="validation loss", xlabel="epoch", ylim=(0, None))
    a2.set(title="train − validation accuracy (evaluation mode)")
    a1.legend(ncol=2)
    _save(fig, png)
    none = next((j for j in jobs if j.extra["label"] == "none"), None)
    parts = []
    if none and none.extra["gap"] is not None:
        others = [j for j in jobs if j is not none and j.extra["gap"] is not None]
        smaller = [j for j in others if j.extra["gap"] < none.extra["gap"]]
        parts.append(
            (
                len(smaller) == len(others),
                f"gap {none.extra['gap']:.3f} without regularization; smaller in "
                f"{len(smaller)} of the {len(others)} regularized runs "
                f"({min(j.extra['gap'] for j in others):.3f}–"
                f"{max(j.extra['gap'] for j in others):.3f})",
            )
        )
        worse = [j for j in others if j.m("test_acc", 0) < none.m("test_acc", 0)]
        parts.append(
            (
                len(worse) <= len(others) // 4,
                f"test accuracy {fmt(none.m('test_acc'))} without regularization, "
                f"{len(others) - len(worse)} of {len(others)} regularized runs at least as "
                f"high",
            )
        )
    return Section(
        table(
            [
                "regularization",
                "train acc",
                "val acc",
                "gap",
                "best val loss",
                "final val loss",
                "epochs",
                "test acc",
            ],
            rows,
        ),
        verdict(parts),
        [
            "train and validation accuracy in evaluation mode at the weights the run "
            "evaluates at the end (the best epoch's with early stopping, else the last)"
        ],
    )


def lesson_batch_size(jobs, png):
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    rows = []
    for j in jobs:
        bs = j.o("trainer.batch_size")
        per_epoch = j.m("train_time", math.nan) / max(j.m("epochs_run", 1), 1)
        j.extra["per_epoch"] = per_epoch
        label = f"batch {bs}"
        a1.plot(j.curve("epoch"), j.curve("val_acc"), marker="o", ms=3, label=label)
        a2.plot(j.curve("time"), j.curve("val_acc"), marker="o", ms=3, label=label)
        rows.append(
            [
                str(bs),
                str(j.m("steps_per_epoch")),
                f"{1000 * per_epoch:.1f}",
                f"{j.m('train_time', math.nan):.2f}",
                fmt(j.m("final_train_loss")),
                fmt(j.m("best_val_acc")),
                fmt(j.m("test_acc")),
            ]
        )
    a1.set(title="validation accuracy per epoch", xlabel="epoch", ylim=(0, 1))
    a2.set(title="validation accuracy against training wall time", xlabel="seconds", ylim=(0, 1))
    a1.legend(), a2.legend()
    _save(fig, png)
    order = sorted(jobs, key=lambda j: j.m("batch_size", 0))
    parts = []
    if len(order) >= 2:
        steps = [j.m("steps_per_epoch") for j in order]
        parts.append(
            (
                steps == sorted(steps, reverse=True) and steps[-1] == 1,
                "updates per epoch " + " / ".join(str(s) for s in steps),
            )
        )
        t = [j.extra["per_epoch"] for j in order]
        parts.append(
            (
                t[0] > t[-1],
                f"wall time per epoch {1000 * t[0]:.1f} ms at batch "
                f"{order[0].m('batch_size')} vs {1000 * t[-1]:.1f} ms full batch",
            )
        )
        acc = [j.m("best_val_acc", 0) for j in order]
        parts.append(
            (
                acc[0] > acc[-1] and acc == sorted(acc, reverse=True),
                "best validation accuracy "
                + " / ".join(f"{a:.3f}" for a in acc)
                + " from the smallest batch to full batch",
            )
        )
    return Section(
        table(
            [
                "batch size",
                "updates / epoch",
                "ms / epoch",
                "train time (s)",
                "final train loss",
                "best val acc",
                "test acc",
            ],
            rows,
        ),
        verdict(parts),
        [
            "training wall time (compilation excluded), default XLA optimisation level, "
            "on this machine"
        ],
    )


def lesson_learning_rate(jobs, png):
    plt = _plt()
    fig, ax = plt.subplots(1, 1, figsize=(6, 3.6))
    rows = []
    jobs = sorted(jobs, key=lambda j: float(j.o("optimizer.lr")))
    for j in jobs:
        lr = float(j.o("optimizer.lr"))
        ep = j.curve("epoch")
        tl = j.curve("train_loss")
        (line,) = ax.semilogy(
            [0] + ep,
            [j.m("initial_train_loss", math.nan)] + tl,
            marker="o",
            ms=3,
            label=f"lr {lr:g} ({j.m('status')})",
        )
        if j.m("status") == "diverged" and ep:
            ax.plot([ep[-1]], [tl[-1]], marker="x", ms=9, color=line.get_color())
        last = j.diag_at(int(ep[-1])) if ep else {}
        dead = [
            r["dead_frac"]
            for n, r in last.items()
            if n.startswith("layer")
            and isinstance(r["dead_frac"], float)
            and not math.isnan(r["dead_frac"])
        ]
        j.extra["dead"] = max(dead) if dead else None
        rows.append(
            [
                f"{lr:g}",
                j.m("status"),
                str(j.m("epochs_run")),
                fmt(j.m("initial_train_loss")),
                fmt(tl[0] if tl else None, ".4g"),
                fmt(tl[-1] if tl else None, ".4g"),
                fmt(j.m("best_val_acc")),
                fmt(j.extra["dead"], "%"),
                j.m("diverged_reason", "") or "",
            ]
        )
    init = jobs[0].m("initial_train_loss", math.nan) if jobs else math.nan
    ax.axhline(3 * init, color="grey", lw=0.8, ls=":", label="3 x initial loss (abort)")
    ax.set(title="training loss (epoch 0: the untrained model)", xlabel="epoch")
    ax.legend()
    _save(fig, png)
    parts = []
    if len(jobs) == 4:
        low, good, high, boom = jobs
        parts.append(
            (
                low.m("final_train_loss", 0) > 0.8 * low.m("initial_train_loss", 1),
                f"lr {float(low.o('optimizer.lr')):g}: loss "
                f"{fmt(low.m('initial_train_loss'))} → {fmt(low.m('final_train_loss'))} "
                f"after {low.m('epochs_run')} epochs",
            )
        )
        parts.append(
            (
                good.m("best_val_acc", 0) > 0.9,
                f"lr {float(good.o('optimizer.lr')):g}: validation accuracy "
                f"{fmt(good.m('best_val_acc'))}",
            )
        )
        first = high.curves[0]["train_loss"] if high.curves else None
        caught = (  # stopped by a single update's loss while the epoch's mean stayed under 3x
            high.m("status") == "diverged"
            and "step training loss" in (high.m("diverged_reason", "") or "")
            and first is not None
            and first < 3 * high.m("initial_train_loss", 0)
        )
        if caught:
            parts.append(
                (
                    True,
                    f"lr {float(high.o('optimizer.lr')):g}: first-epoch mean loss "
                    f"{fmt(first, '.3g')} (under 3 x initial {fmt(high.m('initial_train_loss'))}), "
                    f"stopped by the per-step check: {high.m('diverged_reason')}",
                )
            )
        else:
            parts.append(
                (
                    high.m("status") == "completed" and high.m("best_val_acc", 1) < 0.5,
                    f"lr {float(high.o('optimizer.lr')):g}: first-epoch loss "
                    f"{fmt(high.curves[0]['train_loss'] if high.curves else None, '.3g')}, then "
                    f"stuck at {fmt(high.m('final_train_loss'))} (accuracy "
                    f"{fmt(high.m('best_val_acc'))}"
                    + (
                        f", {100 * high.extra['dead']:.0f}% dead units"
                        if high.extra.get("dead") is not None
                        else ""
                    )
                    + ")",
                )
            )
        reason = boom.m("diverged_reason", "") or ""
        parts.append(
            (
                boom.m("status") == "diverged" and "x initial" in reason,
                f"lr {float(boom.o('optimizer.lr')):g}: {boom.m('status')} at epoch "
                f"{boom.m('diverged_epoch')} ({reason or 'no reason'})",
            )
        )
    return Section(
        table(
            [
                "lr",
                "status",
                "epochs run",
                "initial loss",
                "loss epoch 1",
                "last loss",
                "best val acc",
                "dead units (last epoch)",
                "stopped because",
            ],
            rows,
        ),
        verdict(parts),
        [
            "dead units: the largest fraction over the hidden layers of ReLUs that output "
            "0 for every example of a 256-example batch (diagnostics.csv)"
        ],
    )


ANALYSES = {name: globals()[f"lesson_{name}"] for name in LESSONS}


# ---------------------------------------------------------------------------------------------
# the document


def machine() -> str:
    cpus = os.cpu_count() or 0
    try:
        import jax

        dev = jax.devices()[0]
        backend = f"JAX {jax.__version__} on {dev.platform.upper()}"
    except Exception:  # noqa: BLE001
        backend = "JAX"
    return f"{platform.system()} {platform.machine()}, {cpus} CPU cores, {backend}"


def render(
    preset: Preset,
    index: int,
    section: Section | None,
    png_rel: str,
    elapsed: float | None,
    runs_rel: str,
) -> str:
    out = [f"## {index}. {preset.title}", ""]
    claim = preset.claim[:1].upper() + preset.claim[1:]
    out += [f"**Claim** {preset.source}**.** {claim}".replace("  ", " "), ""]
    out += [
        "```",
        preset.command_line,
        f"# its grid (hydra.sweeper.params in conf/experiment/{preset.name}.yaml):",
        f"#   {preset.grid_line}",
        "```",
        "",
    ]
    if section is None:
        out += ["*Not run yet: `python scripts/lessons.py --only " + preset.name + "`.*", ""]
        return "\n".join(out)
    out += [section.table, ""]
    for note in section.notes:
        out += [f"<sub>{note}</sub>", ""]
    out += [section.verdict, ""]
    out += [f"![{preset.name}]({png_rel})", ""]
    took = f", {elapsed:.0f} s" if elapsed is not None else ""
    out += [f"<sub>Expected (preset header): {preset.should} Runs: `{runs_rel}`{took}.</sub>", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these presets (repeat or comma-separate); the others are "
        "re-read from --runs if there",
    )
    p.add_argument("--quick", action="store_true", help="1 epoch per run (a smoke test)")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="run nothing: rebuild the document from the sweeps under --runs",
    )
    p.add_argument(
        "--runs",
        default=str(ROOT / "outputs" / "lessons"),
        metavar="DIR",
        help="where the sweeps go (default outputs/lessons)",
    )
    p.add_argument(
        "--out",
        default=str(ROOT / "docs" / "lessons.md"),
        metavar="FILE.md",
        help="the document (default docs/lessons.md); plots in <its folder>/lessons/",
    )
    args = p.parse_args(argv)
    only = [n for item in args.only for n in item.split(",") if n]
    unknown = [n for n in only if n not in LESSONS]
    if unknown:
        p.error(f"--only {unknown[0]}: unknown preset; choose from {', '.join(LESSONS)}")
    runs, out = Path(args.runs).resolve(), Path(args.out).resolve()
    img_dir = out.parent / "lessons"
    log = lambda msg: print(msg, flush=True)
    timings_file = runs / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    presets = [read_preset(n) for n in LESSONS]
    t_all = time.perf_counter()
    for preset in presets:
        if args.reuse or (only and preset.name not in only):
            continue
        log(f"{preset.name}: {preset.title}")
        timings[preset.name] = run_preset(preset, runs, args.quick, log)
        log(f"  {timings[preset.name]:.0f} s")
        runs.mkdir(parents=True, exist_ok=True)
        timings_file.write_text(json.dumps(timings, indent=1))
    ran = time.perf_counter() - t_all

    sections = []
    for i, preset in enumerate(presets, 1):
        folder = runs / preset.name
        png = img_dir / f"{preset.name}.png"
        png_rel = os.path.relpath(png, out.parent)
        try:
            runs_rel = os.path.relpath(runs / preset.name, ROOT)
        except ValueError:
            runs_rel = str(runs / preset.name)
        loaded = load_sweep(folder) if folder.is_dir() else []
        if not loaded:
            sections.append(render(preset, i, None, png_rel, None, runs_rel))
            continue
        section = ANALYSES[preset.name](loaded, png)
        if not all(j.diag for j in loaded):
            section.notes.append("some runs have no diagnostics.csv: per-layer columns are empty")
        sections.append(render(preset, i, section, png_rel, timings.get(preset.name), runs_rel))
        log(f"{preset.name}: {section.verdict.split('.')[0].strip('*')}")
    total = sum(timings.get(n, 0) for n in LESSONS)
    head = [
        "# Lessons: the course notes, reproduced",
        "",
        "Generated by `python scripts/lessons.py` from real runs of the nine presets in "
        "`conf/experiment/` (each file's header holds its command, its claim and what the runs "
        "should show; its `hydra.sweeper.params`, the grid that `runner -m experiment=NAME` "
        "runs). Every number below is read from the runs' `metrics.json`, `curves.csv`, "
        "`diagnostics.csv` and `best_params.npz`; each verdict checks the claim against those "
        "numbers, and says so when they disagree. Regenerate with "
        "`.venv/bin/python scripts/lessons.py` (all nine), `--only NAME` (one preset; the "
        "others are re-read), `--reuse` (no training).",
        "",
        f"Last full build: {_dt.date.today().isoformat()}, {machine()}; the sweeps took "
        f"{total / 60:.1f} min of wall time in all ("
        + ", ".join(f"{n} {timings[n]:.0f} s" for n in LESSONS if n in timings)
        + ")."
        + (" **Quick mode: 1 epoch per run, the verdicts mean nothing.**" if args.quick else ""),
        "",
        "Contents: "
        + " · ".join(f"[{i}. {p.name}](#{anchor(i, p.title)})" for i, p in enumerate(presets, 1)),
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    from runner.rundir import atomic_write

    atomic_write(out, "\n".join(head + sections).rstrip() + "\n")
    log(f"wrote {out} ({ran:.0f} s of sweeps this time)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
