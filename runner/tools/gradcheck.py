"""`runner gradcheck [OPTIONS] [HYDRA OVERRIDES...]`: the notes' gradient check.

The configured model's analytic gradient (jax.grad of the training loss) is compared with
centered finite differences, in float64, on a few training examples:

- model and loss: the config composed from conf/ with the overrides (any ``group=option`` or
  ``key=value``), its parameters at initialization (``seed``; ``--params RUN/best_params.npz``
  checks a trained run's weights instead), the first ``--examples`` (8) training examples.
  loss(w) = mean per-example loss + the L1/L2 penalty (exactly what a training step
  differentiates).
- forward pass: the training-mode one with dropout switched off (dropout is a random mask;
  with it off the function is deterministic). Batch norm normalizes with the statistics of the
  checked examples, as in a training step, so the check covers the gradient through the batch
  mean and variance; rrelu draws its random slopes from a fixed key (a fixed function of w).
- numeric derivative: n_i = (L(w + h e_i) - L(w - h e_i)) / (2h), h = ``--step`` (1e-6), for
  ``--entries`` (10) randomly chosen entries of every parameter array (all of a smaller one).
- error: r_i = |a_i - n_i| / max(|a_i| + |n_i|, floor), floor = 16 nu / 1e-6, where
  nu = eps_64 max(|L|, 1) / h is the scale of the round-off in the difference quotient
  (eps_64 = 2.2e-16; nu ~ 2.2e-10 for L ~ 1 and h = 1e-6). Measured on correct gradients,
  |a - n| stays under 2 nu for shallow nets and reaches ~6 nu in 30-layer batch-norm nets (the
  loss accumulates more rounding), hence the margin 16. So at the default threshold r_i < 1e-6
  means |a_i - n_i| < max(1e-6 (|a_i| + |n_i|), 16 nu): a derivative too small to be measured to
  relative precision 1e-6 (below ~3.5e-3 max(|L|, 1), e.g. the first layers of a deep sigmoid
  net) is held to 16 times the round-off instead of yielding a meaningless ratio of noise.
- kinks: ReLU-family activations, max-pooling, maxout, SELU and |w| (L1) are not differentiable
  everywhere; a difference taken across a kink (a pre-activation within h of 0) is a known false
  alarm. An entry whose analytic derivative jumps inside [w - h, w + h] by at least its
  discrepancy, |a(w + h e_i) + a(w - h e_i) - 2 a(w)| >= |a_i - n_i| (a smooth function gives
  ~h^2 there, a kink the size of the jump), is reported as a kink and left out of the verdict.
- verdict: PASS when every other entry has r_i < ``--threshold`` (THRESHOLD = 1e-6: a correct
  gradient gives ~1e-7 or less in float64, a wrong one 1e-3 to 1; 1.01 x the gradient gives
  5e-3). Exit code 0 on
  PASS, 1 on FAIL, 2 on bad input (one line ``runner: error: ...`` on stderr).

One row per layer (the top-level parameter name, in diagnostics.csv's order,
runner.core.layerstats.network_order: layer0, layer1, skip1, ..., head): the entries checked, the
max relative error, the worst entry (analytic vs numeric) and kinks skipped.

``--run RUN_DIR`` checks a finished run's best weights (best_params.npz) with its own config.
``check(cfg, ..., grad_fn=...)`` is the Python entry point; ``grad_fn`` replaces ``jax.grad``
(a function of the loss returning a function of the params), so a test can inject a wrong
gradient and watch the check fail.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from runner.shell import OneLineParser

EXIT_FAIL = 1
THRESHOLD = 1e-6
ROUNDOFF_MARGIN = 16.0  # the floor: |a - n| under 16 x the round-off passes at THRESHOLD
STEP = 1e-6
EXAMPLES = 8
ENTRIES = 10


class GradcheckError(Exception):
    """Bad input: one line for the user, exit code 2."""


@dataclass
class Entry:
    param: str  # "layer0/dense/kernel"
    index: tuple  # position in the array
    analytic: float
    numeric: float
    rel_error: float
    kink: bool


@dataclass
class LayerReport:
    name: str
    entries: list = field(default_factory=list)

    @property
    def checked(self) -> list:
        return [e for e in self.entries if not e.kink]

    @property
    def kinks(self) -> int:
        return sum(e.kink for e in self.entries)

    @property
    def max_rel_error(self) -> float | None:
        c = self.checked
        return max(e.rel_error for e in c) if c else None

    @property
    def worst(self) -> Entry | None:
        c = self.checked
        return max(c, key=lambda e: e.rel_error) if c else None

    def passed(self, threshold: float) -> bool:
        m = self.max_rel_error
        return m is None or m < threshold


@dataclass
class Report:
    layers: list
    threshold: float
    step: float
    floor: float  # denominator floor: ROUNDOFF_MARGIN x round-off / THRESHOLD
    examples: int
    loss: float
    n_params: int
    setup: str = ""

    @property
    def passed(self) -> bool:
        return all(layer.passed(self.threshold) for layer in self.layers)

    @property
    def max_rel_error(self) -> float:
        vals = [lr.max_rel_error for lr in self.layers if lr.max_rel_error is not None]
        return max(vals) if vals else 0.0

    @property
    def entries(self) -> list:
        return [e for lr in self.layers for e in lr.entries]

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "threshold": self.threshold,
            "step": self.step,
            "floor": self.floor,
            "examples": self.examples,
            "loss": self.loss,
            "max_rel_error": self.max_rel_error,
            "layers": {
                lr.name: {
                    "checked": len(lr.checked),
                    "kinks": lr.kinks,
                    "max_rel_error": lr.max_rel_error,
                }
                for lr in self.layers
            },
        }


def _path_name(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def check(
    cfg,
    ds=None,
    *,
    examples: int = EXAMPLES,
    entries: int = ENTRIES,
    step: float = STEP,
    threshold: float = THRESHOLD,
    seed: int = 0,
    grad_fn=None,
    params=None,
    batch_stats=None,
) -> Report:
    """Gradient check of cfg's model (a validated runner.config.Config) on ``examples`` training
    examples of ``ds`` (default: load_dataset(cfg.data)). ``grad_fn(loss) -> (params -> grads)``
    replaces jax.grad (to test the check itself). ``params``/``batch_stats``: weights to check
    (default: the model's initialization for cfg.seed). ``seed`` picks the entries."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.flatten_util import ravel_pytree

    from runner.core import losses, optim, train
    from runner.core.layerstats import network_order
    from runner.core.nn import build_model
    from runner.core.spec import make_hparams, make_spec
    from runner.data import load_dataset

    if ds is None:
        from runner.datasets import cache_in

        with cache_in(cfg.paths):
            ds = load_dataset(cfg.data)
    n = min(int(examples), len(ds.x_train))
    if n < 1:
        raise GradcheckError("--examples: need at least 1 example")
    with jax.enable_x64(True):
        f64 = jnp.float64
        spec = make_spec(cfg, ds)
        mspec = dataclasses.replace(spec.model, dropout=False)
        hp = {k: jnp.asarray(v, f64) for k, v in make_hparams(cfg, spec).items()}
        model = build_model(mspec, hp)
        x = jnp.asarray(ds.x_train[:n], f64)
        y = ds.y_train[:n]
        y = jnp.asarray(y, jnp.int32 if y.dtype.kind in "iu" else f64)
        # A run's own key split (the training state's initial weights); its run key fixes the
        # rrelu and dropout draws.
        keys = train.init_keys(jax.random.PRNGKey(cfg.seed))
        if params is None:
            params, batch_stats = train.init_variables(mspec, hp, keys, x[:1].astype(jnp.float32))
        to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, f64), t)
        params, batch_stats = to64(params), to64(batch_stats or {})
        mask = optim.decay_mask(params, spec.optim.penalize_bias_and_norm)
        head = mspec.head
        rngs = {"rrelu": keys.run, "dropout": keys.run}

        def loss(p):
            variables = {"params": p}
            if mspec.batchnorm:
                variables["batch_stats"] = batch_stats
                out, _ = model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
            else:
                out = model.apply(variables, x, train=True, rngs=rngs)
            return jnp.mean(losses.per_example_loss(head, out, y)) + optim.penalty(p, mask, hp)

        w0, unravel = ravel_pytree(params)
        gtree = (grad_fn or jax.grad)(loss)

        def flat_loss(w):
            return loss(unravel(w))

        def flat_grad(w):
            return ravel_pytree(gtree(unravel(w)))[0]

        # entries to probe: a seeded choice per parameter array, as offsets into w0
        rng = np.random.default_rng(seed)
        leaves = jax.tree_util.tree_leaves_with_path(params)
        names, idx, where = [], [], []
        offset = 0
        for path, leaf in leaves:
            size = int(np.size(leaf))
            pick = (
                np.arange(size)
                if size <= entries
                else np.sort(rng.choice(size, entries, replace=False))
            )
            name = _path_name(path)
            for j in pick:
                names.append(name)
                where.append(np.unravel_index(int(j), np.shape(leaf)))
                idx.append(offset + int(j))
            offset += size
        idx = jnp.asarray(np.asarray(idx, np.int64))
        h = jnp.asarray(step, f64)

        @jax.jit
        def probe(w, idx):
            g0 = flat_grad(w)

            def one(i):
                e = jnp.zeros_like(w).at[i].set(h)
                fp, fm = flat_loss(w + e), flat_loss(w - e)
                gp, gm = flat_grad(w + e)[i], flat_grad(w - e)[i]
                return (fp - fm) / (2 * h), gp + gm - 2 * g0[i]

            num, jump = jax.lax.map(one, idx)
            return flat_loss(w), g0[idx], num, jump

        l0, ana, num, jump = jax.device_get(probe(w0, idx))
    ana, num, jump = (np.asarray(a, np.float64) for a in (ana, num, jump))
    diff = np.abs(ana - num)
    roundoff = np.finfo(np.float64).eps * max(abs(float(l0)), 1.0) / step
    floor = ROUNDOFF_MARGIN * roundoff / THRESHOLD
    rel = diff / np.maximum(np.abs(ana) + np.abs(num), floor)
    kink = (np.abs(jump) >= diff) & (rel >= threshold)
    layers: dict[str, LayerReport] = {}
    for k, name in enumerate(names):
        top = name.split("/")[0]
        layers.setdefault(top, LayerReport(top)).entries.append(
            Entry(
                param=name,
                index=tuple(int(i) for i in where[k]),
                analytic=float(ana[k]),
                numeric=float(num[k]),
                rel_error=float(rel[k]),
                kink=bool(kink[k]),
            )
        )
    ordered = [layers[k] for k in network_order(layers)]
    return Report(
        layers=ordered,
        threshold=threshold,
        step=step,
        floor=floor,
        examples=n,
        loss=float(l0),
        n_params=int(w0.size),
    )


# ---------------------------------------------------------------------------------------------
# command line


def _fmt(v) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    return f"{v:.2e}"


def _entry_name(e: Entry) -> str:
    return f"{e.param.split('/', 1)[-1]}[{','.join(map(str, e.index))}]"


def render(report: Report, console=None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(
        title=f"gradient check: {report.setup}" if report.setup else "gradient check",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    t.add_column("layer", no_wrap=True)
    t.add_column("n", justify="right", no_wrap=True)
    t.add_column("rel.err", justify="right", no_wrap=True)
    t.add_column("worst entry", no_wrap=True)
    t.add_column("analytic", justify="right", no_wrap=True)
    t.add_column("numeric", justify="right", no_wrap=True)
    t.add_column("kinks", justify="right", no_wrap=True)
    for lr in report.layers:
        w = lr.worst
        ok = lr.passed(report.threshold)
        err = _fmt(lr.max_rel_error)
        t.add_row(
            lr.name,
            str(len(lr.checked)),
            f"[green]{err}[/]" if ok else f"[bold red]{err}[/]",
            _entry_name(w) if w else "-",
            f"{w.analytic:.4g}" if w else "-",
            f"{w.numeric:.4g}" if w else "-",
            str(lr.kinks) if lr.kinks else "",
        )
    console.print(t)
    kinks = sum(lr.kinks for lr in report.layers)
    verdict = "[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]"
    sym = "<" if report.passed else ">="
    failed = [lr.name for lr in report.layers if not lr.passed(report.threshold)]
    console.print(
        f"{verdict}: max relative error {_fmt(report.max_rel_error)} {sym} threshold "
        f"{report.threshold:g}" + (f" in {', '.join(failed)}" if failed else ""),
        highlight=False,
    )
    console.print(
        f"float64, centered differences with h={report.step:g} on {report.examples} training "
        f"examples, {len(report.entries)} of {report.n_params} parameters; "
        f"r = |a-n| / max(|a|+|n|, {report.floor:.2g}) (the floor: {ROUNDOFF_MARGIN:g} x the "
        f"round-off eps*max(|L|,1)/h, / 1e-6; loss L={report.loss:.6g})"
        + (f"; {kinks} entries whose difference crossed a kink were left out" if kinks else ""),
        highlight=False,
        style="dim",
    )


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="runner gradcheck",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Compare the configured model's analytic gradient with centered finite differences "
            "in float64 on a few examples; one row per layer with the max relative error "
            "r = |a-n| / max(|a|+|n|, floor), the floor 16x the round-off of the difference "
            "quotient / 1e-6. Exit 0 PASS, 1 FAIL, 2 bad input.",
            78,
        ),
        epilog="examples:\n"
        "  runner gradcheck activation=tanh model.depth=4\n"
        "  runner gradcheck model=cnn activation=tanh regularization.batchnorm=true\n"
        "  runner gradcheck regularization.l2=1e-3 --examples 16 --entries 20\n"
        "  runner gradcheck --run outputs/DATE/TIME   # a trained run's best weights\n"
        + textwrap.fill(
            "ReLU-family kinks: an entry whose finite difference crosses a kink (the "
            "analytic derivative jumps within +-h) is reported in the kinks column and "
            "left out of the verdict.",
            78,
        ),
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="OVERRIDE",
        help="Hydra overrides, as for runner (group=option, key=value)",
    )
    p.add_argument(
        "--examples",
        type=int,
        default=EXAMPLES,
        metavar="N",
        help=f"training examples in the loss (default {EXAMPLES})",
    )
    p.add_argument(
        "--entries",
        type=int,
        default=ENTRIES,
        metavar="K",
        help=f"entries checked per parameter array (default {ENTRIES}; all of a smaller array)",
    )
    p.add_argument(
        "--step",
        type=float,
        default=STEP,
        metavar="H",
        help=f"finite-difference step h (default {STEP:g})",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD,
        metavar="T",
        help=f"PASS when every max relative error is < T (default {THRESHOLD:g})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of the choice of entries (the model's own seed is seed=...)",
    )
    p.add_argument(
        "--run",
        metavar="RUN_DIR",
        help="check a finished run's best weights (best_params.npz) with its own "
        "config (.hydra/config.yaml) instead of a fresh initialization",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON instead")
    return p


def compose(overrides: list[str]):
    """The composed config (a DictConfig) for Hydra overrides, as the runner command sees it."""
    from runner.help import compose as compose_conf

    return compose_conf(overrides)


def _load_run(path: str):
    """(Config, params, batch_stats) of a run directory (read through runner.rundir)."""
    from runner import rundir
    from runner.config import ConfigError, validate

    run = Path(path)
    got = rundir.read_config(run, flat=False)
    if got.missing:
        raise GradcheckError(f"--run {path}: not a run directory (no {rundir.CONFIG})")
    if got.error:
        raise GradcheckError(f"--run {path}: {got.error}")
    if not rundir.has_best(run):
        raise GradcheckError(
            f"--run {path}: has no {rundir.BEST_PARAMS} (unfinished, or no finite epoch)"
        )
    try:
        cfg = validate(got.data)
    except ConfigError as e:
        raise GradcheckError(f"--run {path}: its config is not valid here: {e}") from e
    try:
        params, batch_stats = rundir.load_best(run)
    except rundir.RunDirError as e:
        raise GradcheckError(f"--run {path}: {e}") from e
    return cfg, params, batch_stats


def _run(args) -> int:
    import json

    for name, value, ok in (
        ("--examples", args.examples, args.examples >= 1),
        ("--entries", args.entries, args.entries >= 1),
        ("--step", args.step, args.step > 0 and math.isfinite(args.step)),
        ("--threshold", args.threshold, args.threshold > 0),
    ):
        if not ok:
            raise GradcheckError(f"{name}={value}: must be > 0")
    bad = [o for o in args.overrides if "=" not in o and not o.startswith("~")]
    if bad:
        raise GradcheckError(f"{bad[0]}: not an override (expected key=value or group=option)")
    params = batch_stats = None
    if args.run:
        if args.overrides:
            raise GradcheckError("--run: checks the run's own config; give no overrides with it")
        cfg, params, batch_stats = _load_run(args.run)
        setup = f"run {args.run} (best weights)"
    else:
        from runner.config import validate

        cfg = validate(compose(args.overrides))
        setup = " ".join(args.overrides) or "defaults"
    try:
        report = check(
            cfg,
            examples=args.examples,
            entries=args.entries,
            step=args.step,
            threshold=args.threshold,
            seed=args.seed,
            params=params,
            batch_stats=batch_stats,
        )
    except Exception as e:
        if args.run and type(e).__module__.startswith("flax"):
            raise GradcheckError(
                f"--run {args.run}: best_params.npz does not fit the run's "
                f"model: {str(e).splitlines()[0]}"
            ) from e
        raise
    report.setup = setup
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        render(report)
    return 0 if report.passed else EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    from runner.shell import subcommand

    return subcommand(
        "gradcheck",
        argv,
        lambda a: _run(_parser().parse_intermixed_args(a)),
        expected=(GradcheckError,),
    )


if __name__ == "__main__":
    sys.exit(main())
