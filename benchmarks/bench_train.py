"""Training speed: the runner against a minimal hand-written JAX loop and a plain PyTorch loop.

    .venv/bin/pip install torch==2.13.0          # the optional benchmark dependency
    .venv/bin/python benchmarks/bench_train.py [--repeats 5] [--trials 64] [--launchers vmap,basic]
                                               [--skip-large] [--large-n 60000]
    .venv/bin/python benchmarks/bench_train.py --quick   # every measurement once, toy sizes

Workloads (issue 6), each side by side with a minimal hand-written lax.scan loop and a plain
PyTorch loop: W1 = MNIST-1D (4000 train, 40 standardized features), MLP 40-256-256-10,
ReLU, He init, Adam 1e-3, batch 128, 30 epochs. S = `--trials` W1 runs (4 learning rates x 4
weight decays x trials/16 seeds) as one whole `runner -m` sweep per launcher, against the
peers running the same trials one after another in one process. L = MLP 784-2048-2048-10 on
60,000 synthetic examples, batch 512, 2 epochs. Prints medians over --repeats and the ratios;
docs/performance.md records a run. Run it on a quiet machine: timings are wall clock.
`--quick` (make bench-quick) only checks that every part still runs: W1 for 2 epochs, S16 with
the vmap launcher, L on 2,048 examples, each timed once; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
W1 = dict(epochs=30, batch=128, width=256, lr=1e-3)
WHOLE = 3  # whole-process timings and workload L: median of this many (--quick: 1)
L_OVERRIDES = [
    "data=npz",
    "data.path=/tmp/bench_large.npz",
    "data.preprocessing=none",
    "data.val_fraction=0.01",
    "data.test_fraction=0.01",
    "model.width=2048",
    "trainer.batch_size=512",
    "trainer.epochs=2",
    "trainer.progress=false",
    "trainer.diagnostics=false",
]


def w1_overrides(extra=()):
    return [
        "data=mnist1d",
        "model=mlp",
        "model.depth=2",
        "model.width=256",
        "activation=relu",
        "init=he_normal",
        "optimizer=adam",
        "optimizer.lr=0.001",
        "trainer.batch_size=128",
        f"trainer.epochs={W1['epochs']}",
        "trainer.progress=false",
        *extra,
    ]


def load_w1():
    from runner.config import validate
    from runner.data import load_dataset

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import compose

    cfg = validate(compose(w1_overrides()))
    return cfg, load_dataset(cfg.data)


# ------------------------------------------------------------------------------ the runner
def runner_fit(cfg, ds):
    """(train s, compile s) of one in-process app.fit."""
    from runner import app

    r = app.fit(cfg, ds)
    return r.metrics["train_time"], r.metrics["compile_time"]


# ------------------------------------------------------------- a minimal hand-written JAX loop
@functools.cache
def _scan_programs(in_dim, width, batch, steps, decay):
    """The shortest fast JAX loop we know, compiled once per shape: params as a list, one jitted
    epoch = lax.scan over permuted batches (full batches only), optax.adam (adamw when `decay`)
    with the learning rate and weight decay as traced arguments, so trials that differ only in
    them (S64) share the program, as the runner's do. No validation, no metrics but the loss."""
    import jax
    import jax.numpy as jnp
    import optax

    def init(key):
        sizes = [in_dim, width, width, 10]
        keys = jax.random.split(key, len(sizes) - 1)
        he = jax.nn.initializers.he_normal()
        return [(he(k, (a, b)), jnp.zeros(b)) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def loss_fn(params, xb, yb):
        h = xb
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        w, b = params[-1]
        return optax.softmax_cross_entropy_with_integer_labels(h @ w + b, yb).mean()

    def tx(lr, wd):
        return (
            optax.inject_hyperparams(optax.adamw)(lr, weight_decay=wd)
            if decay
            else optax.inject_hyperparams(optax.adam)(lr)
        )

    def start(key, lr, wd):
        params = init(key)
        return params, tx(lr, wd).init(params)

    def epoch(params, opt, key, x, y, lr, wd):
        perm = jax.random.permutation(key, len(x))[: steps * batch].reshape(steps, batch)

        def step(carry, idx):
            params, opt = carry
            loss, g = jax.value_and_grad(loss_fn)(params, x[idx], y[idx])
            upd, opt = tx(lr, wd).update(g, opt, params)
            return (optax.apply_updates(params, upd), opt), loss

        (params, opt), losses = jax.lax.scan(step, (params, opt), perm)
        return params, opt, losses.mean()

    return jax.jit(start), jax.jit(epoch)


_SCAN_EXE: dict = {}


def scan_loop(x, y, epochs, batch, width, lr, seed=0, wd=0.0):
    """Train one model with the hand-written loop; returns (train s, compile s, last loss)."""
    import jax
    import jax.numpy as jnp

    sig = (x.shape, width, batch, bool(wd))
    start, epoch = _scan_programs(x.shape[1], width, batch, len(x) // batch, bool(wd))
    x, y = jnp.asarray(x), jnp.asarray(y)
    key = jax.random.PRNGKey(seed)
    lr, wd = jnp.float32(lr), jnp.float32(wd)
    t0 = time.perf_counter()
    params, opt = start(key, lr, wd)  # jit: compiles on the first call per shape
    if sig not in _SCAN_EXE:
        _SCAN_EXE[sig] = epoch.lower(params, opt, key, x, y, lr, wd).compile()
    exe = _SCAN_EXE[sig]
    jax.block_until_ready(params)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for e in range(epochs):
        params, opt, loss = exe(params, opt, jax.random.fold_in(key, e), x, y, lr, wd)
    loss.block_until_ready()
    return time.perf_counter() - t0, compile_s, float(loss)


# ------------------------------------------------------------------- a plain PyTorch eager loop
def torch_loop(x, y, epochs, batch, width, lr, seed=0, wd=0.0):
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    x, y = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long)
    model = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 10),
    )
    for m in model:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    # The runner's regularization.weight_decay is AdamW's (w -= lr * wd * w; AdamW here also
    # decays biases, which the runner leaves alone: the same work either way).
    opt = (
        torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
        if wd
        else torch.optim.Adam(model.parameters(), lr=lr)
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x) - batch + 1, batch):
            idx = perm[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return time.perf_counter() - t0, 0.0, float(loss.detach())


TORCH_SCRIPT = """
import sys, time, numpy as np
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from bench_train import torch_loop, load_w1
cfg, ds = load_w1()
torch_loop(ds.x_train.reshape(len(ds.x_train), -1), ds.y_train, {epochs}, 128, 256, 1e-3)
"""

# What a PyTorch user's script does: W1's arrays from a file (save_w1_arrays writes them once),
# no config composing. TORCH_SCRIPT above loads them through the runner's config and loader
# (Hydra, the test suite's conftest), which costs a few seconds of its whole process.
TORCH_SCRIPT_NPZ = """
import sys, numpy as np
sys.path.insert(0, {bench!r})
from bench_train import torch_loop
d = np.load({npz!r})
torch_loop(d["x"], d["y"], {epochs}, 128, 256, 1e-3)
"""


def save_w1_arrays(path):
    """W1's training arrays (flattened) into an .npz for TORCH_SCRIPT_NPZ."""
    _, ds = load_w1()
    np.savez(path, x=ds.x_train.reshape(len(ds.x_train), -1), y=ds.y_train)


def s_grid(n):
    """n = 16 * k trials: 4 learning rates x 4 weight decays x k seeds."""
    lrs = [1e-4, 3e-4, 1e-3, 3e-3]
    wds = [1e-6, 1e-5, 1e-4, 1e-3]
    return [(lr, wd, seed) for lr in lrs for wd in wds for seed in range(max(n // 16, 1))]


def sweep_process(n, launcher, folder="/tmp", env=None):
    """Wall time of the whole `runner -m` sweep of S_n, and what its trials' metrics say; the
    sweep writes to FOLDER/bench_sweep_LAUNCHER, with ENV added to the environment."""
    import json
    import shutil

    lrs, wds, seeds = (sorted({t[i] for t in s_grid(n)}) for i in range(3))
    d = Path(folder) / f"bench_sweep_{launcher}"
    shutil.rmtree(d, ignore_errors=True)
    cmd = [
        str(ROOT / ".venv" / "bin" / "runner"),
        "-m",
        f"hydra/launcher={launcher}",
        *w1_overrides(),
        "optimizer.lr=" + ",".join(map(str, lrs)),
        "regularization.weight_decay=" + ",".join(map(str, wds)),
        "seed=" + ",".join(map(str, seeds)),
        f"hydra.sweep.dir={d}",
        "hydra.sweeper.progress=false",
    ]
    wall = whole_process(cmd, env)
    train = comp = 0.0
    groups, completed = set(), 0
    for m in (json.loads(f.read_text()) for f in d.glob("*/metrics.json")):
        completed += m["status"] == "completed"
        v = m.get("vectorized")
        if v:  # a group's totals, once per group
            key = (v["members"], v["train_time"])
            if key not in groups:
                groups.add(key)
                train, comp = train + v["train_time"], comp + v["compile_time"]
        else:
            train, comp = train + m["train_time"], comp + m["compile_time"]
    return wall, dict(train=train, compile=comp, groups=len(groups), completed=completed)


def whole_process(cmd, env=None):
    """Seconds until the process exits. Its output goes to files, not pipes: a detached child
    (runner draws PNGs in one) would hold a pipe open, and reading it to the end would time
    the child too, where the prompt comes back when the process exits."""
    import tempfile

    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        rc = subprocess.run(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, **(env or {})},
            cwd="/tmp",
        ).returncode
        took = time.perf_counter() - t0
        if rc:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"exit {rc}: {' '.join(map(str, cmd))[:300]}\n{tail}")
    return took


def matmul_peak(sizes=(2048, 3072), repeats=7):
    """fp32 GFLOP/s of large jnp matmuls, the best of the repeats: the machine's practical
    peak for this JAX (a median under load would understate it)."""
    import jax

    best = 0.0
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
        f = jax.jit(lambda a: a @ a)
        f(a).block_until_ready()
        for _ in range(repeats):
            t0 = time.perf_counter()
            f(a).block_until_ready()
            best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def med(fn, repeats):
    """Median of fn() over the repeats."""
    return statistics.median(fn() for _ in range(repeats))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument(
        "--launchers", default="vmap,basic", help="launchers for the S sweep, comma-separated"
    )
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--large-n", type=int, default=60000, help="examples of workload L")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: every measurement once at toy sizes (numbers mean nothing)",
    )
    args = ap.parse_args()
    global WHOLE
    peak_sizes = (2048, 3072)
    if args.quick:
        W1["epochs"], WHOLE, peak_sizes = 2, 1, (1024,)
        args.repeats, args.trials, args.launchers = 1, 16, "vmap"
        args.large_n = min(args.large_n, 2048)
    # The `runner` command's XLA set-up (one CPU device per core), before JAX starts: the
    # in-process runs and the scan loop then get what a `runner` process gets.
    from runner.runtime import host_devices as _host_devices

    _host_devices()
    os.environ.setdefault("RUNNER_CACHE_DIR", str(Path.home() / ".cache" / "runner"))
    cfg, ds = load_w1()
    x, y = ds.x_train.reshape(len(ds.x_train), -1), ds.y_train
    n_samples = len(x) * W1["epochs"]
    peak = matmul_peak(peak_sizes)
    print(f"machine: {os.cpu_count()} cores; fp32 matmul peak {peak:.1f} GFLOP/s")
    # Forward+backward of the W1 MLP: 6 flops per weight per example.
    w1_flops = 6 * (40 * 256 + 256 * 256 + 256 * 10) * n_samples

    # First runs compile (the timed ones reuse the programs, as a sweep would); then the three
    # loops take turns, so that a change in the machine's load hits all of them alike.
    _, r_comp = runner_fit(cfg, ds)
    _, s_comp, _ = scan_loop(x, y, **W1)
    loops = {"runner": lambda: runner_fit(cfg, ds)[0], "scan": lambda: scan_loop(x, y, **W1)[0]}
    try:
        import torch  # noqa: F401

        loops["torch"] = lambda: torch_loop(x, y, **W1)[0]
    except ImportError:
        print("torch not installed: pip install torch==2.13.0 for the PyTorch column")
    times = {k: [] for k in loops}
    for _ in range(args.repeats):
        for k, loop in loops.items():
            times[k].append(loop())
    r_train, s_train = statistics.median(times["runner"]), statistics.median(times["scan"])
    t_train = statistics.median(times["torch"]) if "torch" in times else None
    results = {}
    rows = [("runner (in-process, train only)", r_train), ("hand-written lax.scan loop", s_train)]
    if t_train is not None:
        rows.append(("PyTorch eager loop", t_train))
    print(
        f"\nW1: MNIST-1D MLP 40-256-256-10, Adam, batch 128, {W1['epochs']} epochs "
        f"(median of {args.repeats})"
    )
    for name, t in rows:
        print(
            f"  {name:34s} {t:7.3f} s  {n_samples / t:10.0f} samples/s  "
            f"{100 * w1_flops / t / 1e9 / peak:5.1f}% of peak"
        )
    print(f"  compile: runner {r_comp:.2f} s (first run), scan loop {s_comp:.2f} s")
    print(
        f"  ratio runner/scan {r_train / s_train:.2f}"
        + (f", runner/torch {r_train / t_train:.2f}" if t_train else "")
    )

    runner_cmd = [
        str(ROOT / ".venv" / "bin" / "runner"),
        *w1_overrides(["trainer.plot=false"]),
        "hydra.run.dir=/tmp/bench_run",
    ]
    cold = statistics.median(
        [whole_process(runner_cmd, {"RUNNER_JAX_CACHE": "off"}) for _ in range(WHOLE)]
    )
    warm = statistics.median([whole_process(runner_cmd) for _ in range(WHOLE)])
    print(
        f"\nwhole process `runner` W1: {cold:.2f} s without the compilation cache, "
        f"{warm:.2f} s with it (median of {WHOLE})"
    )
    if t_train is not None:
        script = TORCH_SCRIPT.format(
            root=str(ROOT), bench=str(ROOT / "benchmarks"), epochs=W1["epochs"]
        )
        tp = statistics.median(
            [whole_process([sys.executable, "-c", script]) for _ in range(WHOLE)]
        )
        print(
            f"whole process PyTorch script W1: {tp:.2f} s; runner/torch {warm / tp:.2f} "
            f"(cache warm), {cold / tp:.2f} (cold)"
        )

    # S: W1 trials that differ in learning rate, weight decay and seed, as a whole `runner -m`
    # sweep (every trial writes its folder), with the vmap and the basic launcher; the peers
    # run the same trials one after another in one process.
    for launcher in args.launchers.split(","):
        wall, info = sweep_process(args.trials, launcher)
        per = info["train"] / args.trials
        over = (wall - info["train"] - info["compile"]) / args.trials
        print(
            f"\nS{args.trials} `runner -m hydra/launcher={launcher}`: whole sweep {wall:.1f} s "
            f"= compile {info['compile']:.1f} s + train {info['train']:.1f} s + the rest "
            f"{wall - info['train'] - info['compile']:.1f} s (start-up, Hydra's job set-up, "
            f"files); {info['completed']}/{args.trials} completed"
            + (f", {info['groups']} vmapped groups" if info["groups"] else "")
        )
        print(
            f"  per trial: train {per:.3f} s, everything else {over:.3f} s "
            f"({100 * over / per:.0f}% of its training); "
            f"{args.trials * n_samples / wall:,.0f} samples/s over the whole sweep"
        )
        results[f"sweep_{launcher}"] = wall
    # The peers run the same trials one after another in this process: the scan loop compiles
    # once (learning rate and weight decay are traced), PyTorch needs no compile.
    peers = [
        (
            "scan",
            lambda lr, wd, seed: scan_loop(
                x, y, W1["epochs"], W1["batch"], W1["width"], lr, seed=seed, wd=wd
            ),
        )
    ]
    if t_train is not None:
        peers.append(
            (
                "torch",
                lambda lr, wd, seed: torch_loop(
                    x, y, W1["epochs"], W1["batch"], W1["width"], lr, seed=seed, wd=wd
                ),
            )
        )
    for name, loop in peers:
        t0 = time.perf_counter()
        trained = sum(loop(lr, wd, seed)[0] for lr, wd, seed in s_grid(args.trials))
        total = time.perf_counter() - t0
        print(
            f"S{args.trials}: {name} sequential in one process: {total:.1f} s "
            f"(train {trained:.1f} s)"
            + "".join(
                f"; runner {k[6:]}/{name} {v / total:.2f}"
                for k, v in results.items()
                if k.startswith("sweep_")
            )
        )

    if not args.skip_large:
        from runner import app
        from runner.config import validate

        sys.path.insert(0, str(ROOT / "tests"))
        import jax.numpy as jnp  # noqa: F401 - JAX is initialised already
        from conftest import compose

        n, d = args.large_n, 784
        xl = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
        yl = (xl[:, :10].argmax(1)).astype(np.int32)
        np.savez("/tmp/bench_large.npz", x=xl, y=yl)
        cl = validate(compose(L_OVERRIDES))
        from runner.data import load_dataset

        dl = load_dataset(cl.data)
        warm_up = app.fit(cl, dl).metrics
        if warm_up["status"] != "completed" or warm_up["epochs_run"] != 2:
            print(
                f"  (L: the runner's run {warm_up['status']} after {warm_up['epochs_run']} "
                "epochs: its time is not comparable)"
            )
        lt = med(lambda: runner_fit(cl, dl)[0], WHOLE)
        flops = 6 * (d * 2048 + 2048 * 2048 + 2048 * 10) * len(dl.x_train) * 2
        xt = dl.x_train.reshape(len(dl.x_train), -1)
        big = dict(epochs=2, batch=512, width=2048, lr=1e-3)
        lrows = [
            ("runner", "runner (in-process, train only)", lt),
            (
                "scan",
                "hand-written lax.scan loop",
                med(lambda: scan_loop(xt, dl.y_train, **big)[0], WHOLE),
            ),
        ]
        if t_train is not None:
            lrows.append(
                (
                    "torch",
                    "PyTorch eager loop",
                    med(lambda: torch_loop(xt, dl.y_train, **big)[0], WHOLE),
                )
            )
        print(
            f"\nL: MLP 784-2048-2048-10, {n:,} synthetic examples, Adam, batch 512, 2 epochs "
            f"(median of {WHOLE})"
        )
        for _, name, t in lrows:
            print(
                f"  {name:34s} {t:7.2f} s  {2 * len(xt) / t:10.0f} samples/s  "
                f"{flops / t / 1e9:6.1f} GFLOP/s = {100 * flops / t / 1e9 / peak:3.0f}% of peak"
            )
        print("  ratio " + ", ".join(f"runner/{n} {lt / t:.2f}" for n, _, t in lrows[1:]))
        # Whole `runner` processes (data loading from the .npz included): the first may have
        # to compile, the second finds the programs in the persistent cache.
        lcmd = [
            str(ROOT / ".venv" / "bin" / "runner"),
            *L_OVERRIDES,
            "trainer.plot=false",
            "hydra.run.dir=/tmp/bench_run_large",
        ]
        first, second = whole_process(lcmd), whole_process(lcmd)
        print(f"  whole process `runner` L: {first:.1f} s first run, {second:.1f} s second")


if __name__ == "__main__":
    main()
