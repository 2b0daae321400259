"""`runner ensemble SWEEP_DIR [SWEEP_DIR...] --top k [--metric M] [--split test|val]`: the notes'
model ensembles, from a finished sweep.

1. Trials: every run directory under the paths (a folder holding metrics.json) whose status is
   completed and that has best_params.npz (its best epoch's weights) and .hydra/config.yaml.
2. Ranking: by ``--metric`` (a metrics.json key such as best_val_acc, or a short name: val_acc,
   val_loss, val_rmse; ``:max``/``:min`` to set the direction), default the trials' own
   monitored metric (metrics.json "monitor" and "mode": best_val_acc, max, for classification).
   The top k are the members (all of them when there are fewer).
3. Predictions: each member's model is rebuilt from its own config (members may differ in
   architecture, activation, anything but the data split) and evaluated with its saved best
   weights in evaluation mode (runner.core.train.forward, compiled through its program cache:
   no dropout, running batch-norm statistics) on the ``--split``
   (test) examples. The members must share the data split: every data.* setting except
   preprocessing equal (preprocessing is fitted per member on the same training split).
4. Averaging: class probabilities for softmax heads (the ensemble predicts the argmax of the
   mean), P(y=1) for sigmoid heads (threshold 0.5); the predictions themselves for regression
   heads (linear), and the log-space outputs for log_linear heads (a geometric mean of the
   prices; the RMSE stays in log space, as the runs report it).
5. Report: each member's and the ensemble's accuracy (or RMSE) and loss (cross-entropy of the
   averaged probabilities, or MSE) on that split, beside the best single trial (the top-ranked
   one); written as a rich table and to ensemble.json in the (first) sweep folder (atomically).

Exit codes: 0 ok, 2 bad input or nothing to ensemble (one line ``runner: error: ...``).
Python: ``ensemble(paths, top=k) -> Report``; ``member_predictions(trial, split)`` and
``combine(preds, head)`` are the building blocks the tests check by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from runner import rundir
from runner.shell import OneLineParser

SPLITS = ("test", "val")


class EnsembleError(Exception):
    """Bad input: one line for the user, exit code 2."""


@dataclass
class Trial:
    path: Path
    name: str
    metrics: dict
    config: dict  # the composed config (plain dict, from .hydra/config.yaml)
    score: float | None = None
    overrides: list = field(default_factory=list)  # .hydra/overrides.yaml


@dataclass
class Member:
    trial: Trial
    rank: int
    score: float | None
    metric: float  # accuracy or RMSE on the split, from the saved best weights
    loss: float


@dataclass
class Report:
    split: str
    rank_key: str
    mode: str
    metric_name: str  # acc | rmse
    head: str
    members: list
    ensemble_metric: float
    ensemble_loss: float
    n_examples: int
    skipped: dict = field(default_factory=dict)  # reason -> count
    n_trials: int = 0

    @property
    def best_single(self) -> Member:
        return self.members[0]

    @property
    def improvement(self) -> float:
        """Ensemble minus best single (accuracy), or best single minus ensemble (RMSE): > 0 is
        better."""
        d = self.ensemble_metric - self.best_single.metric
        return d if rundir.higher_is_better(self.metric_name) else -d

    def as_dict(self) -> dict:
        m = self.metric_name
        return {
            "split": self.split,
            "rank_by": self.rank_key,
            "mode": self.mode,
            "metric": m,
            "head": self.head,
            "top": len(self.members),
            "n_trials": self.n_trials,
            "n_examples": self.n_examples,
            "skipped": self.skipped,
            "ensemble": {
                f"{self.split}_{m}": self.ensemble_metric,
                f"{self.split}_loss": self.ensemble_loss,
            },
            "best_single": {
                "trial": self.best_single.trial.name,
                "dir": str(self.best_single.trial.path),
                f"{self.split}_{m}": self.best_single.metric,
                f"{self.split}_loss": self.best_single.loss,
            },
            "improvement": self.improvement,
            "members": [
                {
                    "rank": mb.rank,
                    "trial": mb.trial.name,
                    "dir": str(mb.trial.path),
                    "overrides": mb.trial.overrides,
                    self.rank_key: mb.score,
                    f"{self.split}_{m}": mb.metric,
                    f"{self.split}_loss": mb.loss,
                }
                for mb in self.members
            ],
        }


# ---------------------------------------------------------------------------------------------
# trials


def _name(path: Path, roots: list[Path]) -> str:
    """The trial's folder relative to its sweep (prefixed with the sweep's name when several
    sweeps are given)."""
    for root in roots:
        try:
            rel = path.relative_to(root)
        except ValueError:
            continue
        if str(rel) == ".":
            return path.name
        return f"{root.name}/{rel}" if len(roots) > 1 else str(rel)
    return str(path)


def find_trials(paths) -> tuple[list[Trial], dict]:
    """Completed trials with saved weights under the paths, and reason -> count of the others."""
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.exists():
            raise EnsembleError(f"{root}: no such folder")
    found, seen = [], set()
    for root in roots:
        files = (
            [root / rundir.METRICS]
            if (root / rundir.METRICS).is_file()
            else sorted(root.rglob(rundir.METRICS))
        )
        for f in files:
            d = f.parent.resolve()
            if d in seen or any(part.startswith(".") for part in f.relative_to(root).parts[:-1]):
                continue
            seen.add(d)
            found.append(f.parent)
    if not found:
        raise EnsembleError(
            f"{', '.join(map(str, roots))}: no run directories (folders with metrics.json) found"
        )
    trials, skipped = [], {}

    def skip(reason):
        skipped[reason] = skipped.get(reason, 0) + 1

    for d in found:
        got = rundir.read_metrics(d)
        if not got.ok:
            skip(f"unreadable {rundir.METRICS}")
            continue
        metrics = got.data
        status = rundir.status_of(metrics)
        if status != rundir.COMPLETED:
            skip(f"status {status}")
            continue
        if not rundir.has_best(d):
            skip(f"no {rundir.BEST_PARAMS}")
            continue
        cfg = rundir.read_config(d, flat=False)
        if cfg.missing:
            skip(f"no {rundir.CONFIG}")
            continue
        if not cfg.ok:
            skip(f"unreadable {rundir.CONFIG}")
            continue
        config = cfg.data
        overrides = rundir.read_overrides(d).data or []
        trials.append(Trial(d, _name(d, roots), metrics, config, overrides=overrides))
    return trials, skipped


def rank(trials: list[Trial], metric: str | None = None) -> tuple[list[Trial], str, str]:
    """Trials best first by `metric` (default: their monitored metric); (sorted, key, mode)."""
    mode = None
    if metric:
        key, _, direction = metric.partition(":")
        key = rundir.canonical(key)
        if direction and direction not in ("max", "min"):
            raise EnsembleError(f"--metric {metric}: the direction after ':' is max or min")
        mode = direction or rundir.better(key) or "min"
    else:
        monitors = {(t.metrics.get("monitor"), t.metrics.get("mode")) for t in trials}
        if len(monitors) > 1:
            raise EnsembleError(
                "the trials monitor different metrics ("
                + ", ".join(f"{m} {o}" for m, o in sorted(monitors, key=str))
                + "); choose one with --metric"
            )
        ((monitor, mode),) = monitors
        if not monitor:
            raise EnsembleError("metrics.json has no monitor; choose a ranking with --metric")
        key = "best_" + monitor
        mode = mode or rundir.better(monitor) or "min"
    for t in trials:
        v = t.metrics.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if key not in t.metrics and metric:
                raise EnsembleError(
                    f"--metric {metric}: {key} is not in {t.name}/metrics.json "
                    f"(e.g. best_val_acc, best_val_loss, test_acc)"
                )
            v = None
        t.score = float(v) if v is not None and math.isfinite(v) else None
    ranked = [t for t in trials if t.score is not None]
    if not ranked:
        raise EnsembleError(f"no trial has a finite {key}")
    ranked.sort(key=lambda t: (-t.score if mode == "max" else t.score, t.name))
    return ranked, key, mode


def _split_key(config: dict) -> dict:
    data = dict(config.get("data") or {})
    data.pop("preprocessing", None)
    return data


def check_same_split(trials: list[Trial]) -> None:
    first = _split_key(trials[0].config)
    for t in trials[1:]:
        other = _split_key(t.config)
        if other != first:
            diff = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
            k = diff[0]
            raise EnsembleError(
                f"{t.name}: data.{k}={other.get(k)!r} but {trials[0].name} has "
                f"data.{k}={first.get(k)!r}; ensemble members must share the data split "
                f"(every data.* setting but preprocessing)"
            )


# ---------------------------------------------------------------------------------------------
# predictions

_DATA_CACHE: dict = {}


def _dataset(cfg):
    key = repr(cfg.data)
    if key not in _DATA_CACHE:
        from runner.data import load_dataset
        from runner.datasets import cache_in

        with cache_in(cfg.paths):
            _DATA_CACHE[key] = load_dataset(cfg.data)
    return _DATA_CACHE[key]


def member_predictions(trial: Trial, split: str = "test"):
    """(averageable predictions, targets, head) of a trial's saved best weights on a split:
    softmax probabilities (N, C), sigmoid P(y=1) (N,), linear predictions (N,), log_linear
    log-space outputs (N,)."""
    import jax.numpy as jnp
    import numpy as np

    from runner.config import ConfigError, validate
    from runner.core import losses, train
    from runner.core.spec import make_hparams, make_spec

    try:
        cfg = validate(trial.config)
    except ConfigError as e:
        raise EnsembleError(f"{trial.name}: its config is not valid here: {e}") from e
    ds = _dataset(cfg)
    spec = make_spec(cfg, ds)
    hp = {k: jnp.asarray(v) for k, v in make_hparams(cfg, spec).items()}
    params, batch_stats = rundir.load_best(trial.path)
    x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
    if len(x) == 0:
        raise EnsembleError(f"{trial.name}: the {split} split is empty (data.{split}_fraction=0)")
    # The core's evaluation-mode forward pass, compiled once per structure for the process and
    # kept across processes in the trial's paths.jax_cache (runner.progstore).
    from runner.runtime import enable_compilation_cache

    enable_compilation_cache(cfg.paths)
    try:
        x = jnp.asarray(x)
        forward, _ = train.PROGRAMS.get(train.forward, spec, params, batch_stats, x, hp)
        out = np.asarray(forward(params, batch_stats, x, hp), np.float64)
    except Exception as e:
        raise EnsembleError(
            f"{trial.name}: {rundir.BEST_PARAMS} does not fit its config: {str(e).splitlines()[0]}"
        ) from e
    head = spec.model.head
    if head == "log_linear":
        pred = out[..., 0] if out.ndim == 2 else out
    else:
        pred = np.asarray(losses.predict(head, out), np.float64)
    return pred, np.asarray(y), head


def combine(preds: list, head: str):
    """The ensemble's prediction: the mean of the members' (probabilities or predictions)."""
    import numpy as np

    return np.mean(np.stack(preds), axis=0)


def score(pred, y, head: str) -> tuple[float, float]:
    """(accuracy or RMSE, loss) of averaged predictions: cross-entropy of the probabilities
    (clipped at 1e-12) for classification, MSE for regression (log space for log_linear)."""
    import numpy as np

    if head == "softmax":
        p = np.clip(pred[np.arange(len(y)), y], 1e-12, 1.0)
        return float(np.mean(np.argmax(pred, axis=-1) == y)), float(-np.mean(np.log(p)))
    if head == "sigmoid":
        p = np.clip(pred, 1e-12, 1 - 1e-12)
        yy = np.asarray(y, np.float64)
        acc = float(np.mean((pred > 0.5).astype(int) == y))
        return acc, float(-np.mean(yy * np.log(p) + (1 - yy) * np.log(1 - p)))
    target = np.asarray(y, np.float64)
    if head == "log_linear":
        target = np.log(np.where(target > 0, target, 1.0))
    mse = float(np.mean((pred - target) ** 2))
    return math.sqrt(mse), mse


def ensemble(paths, top: int = 5, metric: str | None = None, split: str = "test") -> Report:
    if top < 1:
        raise EnsembleError(f"--top {top}: k must be at least 1")
    if split not in SPLITS:
        raise EnsembleError(f"--split {split}: choose test or val")
    trials, skipped = find_trials(paths)
    if not trials:
        why = ", ".join(f"{n} {r}" for r, n in skipped.items())
        raise EnsembleError(
            f"{', '.join(map(str, paths))}: no completed trial with saved weights ({why})"
        )
    ranked, key, mode = rank(trials, metric)
    members_t = ranked[:top]
    check_same_split(members_t)
    preds, heads, y0 = [], set(), None
    members = []
    for i, t in enumerate(members_t, 1):
        pred, y, head = member_predictions(t, split)
        if y0 is not None and (len(y) != len(y0) or not (y == y0).all()):
            raise EnsembleError(f"{t.name}: its {split} examples differ from {members_t[0].name}'s")
        y0 = y
        heads.add(head)
        if len(heads) > 1:
            raise EnsembleError(
                f"{t.name}: head {head} differs from the others' "
                f"({', '.join(sorted(heads - {head}))}); members must predict "
                f"the same kind of output"
            )
        if preds and pred.shape != preds[0].shape:
            raise EnsembleError(
                f"{t.name}: predictions of shape {pred.shape}, the others {preds[0].shape}"
            )
        preds.append(pred)
        m, loss = score(pred, y, head)
        members.append(Member(t, i, t.score, m, loss))
    head = heads.pop()
    ens = combine(preds, head)
    m, loss = score(ens, y0, head)
    return Report(
        split=split,
        rank_key=key,
        mode=mode,
        metric_name="acc" if head in ("softmax", "sigmoid") else "rmse",
        head=head,
        members=members,
        ensemble_metric=m,
        ensemble_loss=loss,
        n_examples=len(y0),
        skipped=skipped,
        n_trials=len(trials),
    )


# ---------------------------------------------------------------------------------------------
# command line


def render(report: Report, console=None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    m, s = report.metric_name, report.split
    t = Table(
        title=f"ensemble of the top {len(report.members)} of {report.n_trials} trials "
        f"by {report.rank_key} ({report.mode})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    common = set.intersection(*(set(mb.trial.overrides) for mb in report.members))
    t.add_column("rank", justify="right")
    t.add_column("trial")
    t.add_column("settings")
    t.add_column(report.rank_key, justify="right")
    t.add_column(f"{s} {m}", justify="right")
    t.add_column(f"{s} loss", justify="right")
    for mb in report.members:
        own = " ".join(o for o in mb.trial.overrides if o not in common)
        t.add_row(
            str(mb.rank),
            mb.trial.name,
            own,
            f"{mb.score:.4f}",
            f"{mb.metric:.4f}",
            f"{mb.loss:.4f}",
        )
    t.add_section()
    t.add_row(
        "",
        f"[bold]ensemble ({len(report.members)})[/]",
        "",
        "",
        f"[bold]{report.ensemble_metric:.4f}[/]",
        f"[bold]{report.ensemble_loss:.4f}[/]",
    )
    console.print(t)
    best = report.best_single
    d = report.improvement
    delta = (
        f"{100 * d:+.2f} points"
        if m == "acc"
        else f"{d:.4f} lower"
        if d >= 0
        else f"{-d:.4f} higher"
    )
    console.print(
        f"ensemble {s} {m} {report.ensemble_metric:.4f} vs the best single trial "
        f"({best.trial.name}) {best.metric:.4f}: {delta}, on {report.n_examples} "
        f"{s} examples",
        highlight=False,
    )
    if report.skipped:
        console.print(
            "skipped: " + ", ".join(f"{n} ({r})" for r, n in report.skipped.items()),
            style="dim",
            highlight=False,
        )


def _parser():
    p = OneLineParser(
        prog="runner ensemble",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Average the predicted probabilities of a sweep's top-k trials (their saved "
            "best weights) on the test split; report the ensemble's accuracy beside the "
            "best single trial's and each member's, and write ensemble.json in the "
            "sweep folder.",
            78,
        ),
        epilog="examples:\n"
        "  runner -m activation=relu,elu,tanh seed=0,1 hydra.sweep.dir=sw\n"
        "  runner ensemble sw --top 3\n"
        "  runner ensemble sw --top 5 --metric val_loss --split val\n"
        "Exit codes: 0 ok, 2 bad input or nothing to ensemble.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="SWEEP_DIR",
        help="sweep folders (or run folders, or folders above them)",
    )
    p.add_argument(
        "--top",
        "-k",
        type=int,
        default=5,
        metavar="K",
        help="members: the K best trials (default 5)",
    )
    p.add_argument(
        "--metric",
        metavar="KEY[:max|min]",
        help="rank by this metrics.json key (default: the trials' monitor, e.g. "
        "best_val_acc; short names val_acc, val_loss, val_rmse)",
    )
    p.add_argument(
        "--split", choices=SPLITS, default="test", help="the examples to evaluate on (default test)"
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="where to write the report (default SWEEP_DIR/ensemble.json; '-' none)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON instead")
    return p


def _main(argv: list[str]) -> int:
    args = _parser().parse_intermixed_args(argv)
    report = ensemble(args.paths, top=args.top, metric=args.metric, split=args.split)
    data = report.as_dict()
    if args.out != "-":
        from runner.rundir import write_json

        out = Path(args.out) if args.out else Path(args.paths[0]) / "ensemble.json"
        if not args.out and not Path(args.paths[0]).is_dir():
            out = Path(args.paths[0]).parent / "ensemble.json"
        try:
            write_json(out, data)
        except OSError as e:
            raise EnsembleError(f"cannot write {out}: {e.strerror}") from e
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        render(report)
        if args.out != "-":
            print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from runner.shell import subcommand

    return subcommand("ensemble", argv, _main, expected=(EnsembleError, rundir.RunDirError))


if __name__ == "__main__":
    sys.exit(main())
