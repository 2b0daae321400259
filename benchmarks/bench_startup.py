"""Start-up: how long a single `runner` command keeps the prompt, against what it cannot avoid.

    .venv/bin/python benchmarks/bench_startup.py [--repeats 5] [--profile] [--sweep [--trials 64]]
                                                 [--skip-torch] [--keep]

Issue 16's targets, measured side by side in one run (the commands take turns in every repeat,
medians reported):
  1. `python -c "import jax, optax, flax.linen"`, whole process (the venv's interpreter);
  2. the default `runner` (digits, 2x128 MLP, 20 epochs), whole process with the caches warm
     (filled by a first, unmeasured run), and its train_time from the run's metrics.json:
     warm / (import + train_time) <= 1.3;
  3. the default `runner` cold: a new, empty JAX cache folder every repeat (runner's own cache
     of compiled programs lives inside it too): cold / warm <= 2;
  4. W1 (benchmarks/bench_train.py's workload and PyTorch script), whole process with the
     caches warm: runner / PyTorch script <= 0.7 (needs torch: `make .venv/.bench-stamp`);
  5. --sweep: bench_train.py's S sweep (vmap launcher), per-trial overhead beyond training and
     compile against docs/performance.md's 0.158 s (S64); --trials below 64 spreads the fixed
     cost over fewer trials, so it is not comparable;
  6. the time from the process start until curves.png exists and the run's `.plots-pending`
     marker is gone (PNGs drawn by a detached child after the prompt comes back, where runner
     does that; otherwise the PNGs are there when the process exits);
  7. --profile: where a warm run's time goes (`python -X importtime` by package, and the
     run's compile_time / train_time / wall_time).

Everything happens in a scratch folder (its own RUNNER_CACHE_DIR and RUNNER_JAX_CACHE, every
run folder inside it; removed at the end unless --keep). The script only calls the `runner`
command and reads metrics.json, so it survives changes to runner's insides. Output goes to
files, not pipes: a pipe would be held open by a detached child, and a whole process is timed
until it exits (when the prompt comes back). Run it on a quiet machine: timings are wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))
import bench_train as bt  # noqa: E402 - W1's overrides, the PyTorch scripts, the S sweep

VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
RUNNER = str(VENV_BIN / "runner") if (VENV_BIN / "runner").exists() else shutil.which("runner")
BASELINE = "import jax, optax, flax.linen"
PENDING = ".plots-pending"  # in a run folder while its PNGs are being drawn
TIMEOUT = 900  # s, one command
PNG_TIMEOUT = 300  # s, waiting for a run's PNGs after its process exits
S64_OVERHEAD = 0.158  # s a trial, docs/performance.md (2026-12-02, second run)
S64_SLACK = 1.10  # "does not grow": within 10 % of it, for the noise of a whole sweep


class Failed(RuntimeError):
    pass


class Bench:
    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.n = 0
        self.logs = 0
        self.env = {
            **os.environ,
            "RUNNER_CACHE_DIR": str(scratch / "cache"),
            "RUNNER_JAX_CACHE": str(scratch / "jax-warm"),
        }

    def folder(self, name):
        self.n += 1
        return self.scratch / "runs" / f"{self.n:03d}-{name}"

    def process(self, cmd, env=None, rundir=None):
        """Run cmd to its end: {wall, png, pending, metrics}. wall: seconds from the start until
        the process exits. With a run folder: waits until no `.plots-pending` marker is left in
        it (so that no drawing child overlaps the next measurement); png: seconds from the start
        until curves.png exists and the marker is gone (None without curves.png); pending: the
        marker was there when the process exited."""
        self.logs += 1
        log = self.scratch / "logs" / f"{self.logs:03d}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            t0 = time.perf_counter()
            p = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env or self.env,
                cwd=self.scratch,
            )
            try:
                rc = p.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = f"killed after {TIMEOUT} s"
            wall = time.perf_counter() - t0
        if rc:
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            raise Failed(f"exit {rc}: {' '.join(map(str, cmd))[:200]}\n  " + "\n  ".join(tail))
        out = dict(wall=wall, png=None, pending=False, metrics=None, log=log)
        if rundir is not None:
            marker, curves = rundir / PENDING, rundir / "curves.png"
            out["pending"] = marker.exists()
            deadline = time.perf_counter() + PNG_TIMEOUT
            while marker.exists() and time.perf_counter() < deadline:
                time.sleep(0.01)
            done = time.perf_counter() - t0
            if marker.exists():
                raise Failed(f"{marker} still there {PNG_TIMEOUT} s after the process exited")
            if curves.exists():
                out["png"] = done if out["pending"] else wall
            elif (rundir / "plots-error.txt").exists():  # where runner reports a failed draw
                err = (rundir / "plots-error.txt").read_text(errors="replace").strip()
                print(f"no curves.png in {rundir}: {err.splitlines()[-1:]}", flush=True)
            m = rundir / "metrics.json"
            if not m.exists():
                raise Failed(f"no metrics.json in {rundir}")
            out["metrics"] = json.loads(m.read_text())
        return out

    def runner(self, name, overrides=(), env=None):
        rundir = self.folder(name)
        return self.process([RUNNER, *overrides, f"hydra.run.dir={rundir}"], env, rundir)


def venv_versions():
    """Versions of what the venv's interpreter imports (not this script's interpreter)."""
    code = (
        "import importlib.metadata as m, json, platform\n"
        "v = {'python': platform.python_version()}\n"
        "for p in ('jax', 'jaxlib', 'torch'):\n"
        "    try: v[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: v[p] = None\n"
        "print(json.dumps(v))"
    )
    return json.loads(subprocess.run([PYTHON, "-c", code], capture_output=True).stdout)


def machine(versions):
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        import platform

        cpu = platform.processor() or platform.machine()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    return (
        f"{cpu}, {os.cpu_count()} cores ({usable} usable), load {os.getloadavg()[0]:.1f}; "
        f"Python {versions['python']}, jax {versions['jax']}, jaxlib {versions['jaxlib']}, "
        f"torch {versions['torch'] or 'not installed'}; runner {commit or '?'}"
    )


def importtime(stderr: str):
    """`python -X importtime` output: total and per top-level package self time, in s."""
    per: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = (f.strip() for f in line[len("import time:") :].split("|"))
        top = name.split(".")[0]
        per[top] = per.get(top, 0.0) + int(self_us) / 1e6
    return sum(per.values()), per


def profile(b: Bench, whole_warm, wall_warm):
    """One more warm default run under `-X importtime`, and what its metrics.json says."""
    rundir = b.folder("profile")
    r = b.process([PYTHON, "-X", "importtime", RUNNER, f"hydra.run.dir={rundir}"], None, rundir)
    total, per = importtime(r["log"].read_text(errors="replace"))
    m = r["metrics"]
    groups = {
        "jax + jaxlib + ml_dtypes": ("jax", "jaxlib", "ml_dtypes"),
        "flax + optax + chex": ("flax", "optax", "chex"),
        "hydra + omegaconf + antlr4": ("hydra", "omegaconf", "antlr4"),
        "runner": ("runner",),
        "numpy + scipy + sklearn": ("numpy", "scipy", "sklearn"),
        "matplotlib + PIL": ("matplotlib", "PIL", "mpl_toolkits"),
        "rich": ("rich",),
    }
    print("\n## Profile of a warm default run (one run; -X importtime adds its own overhead)\n")
    print(f"whole process under -X importtime: {r['wall']:.2f} s (warm median: {whole_warm:.2f} s)")
    print(
        f"metrics.json: wall_time {m.get('wall_time', float('nan')):.2f} s = compile_time "
        f"{m.get('compile_time', float('nan')):.2f} s + train_time "
        f"{m.get('train_time', float('nan')):.2f} s + the rest; outside wall_time (interpreter, "
        f"imports, config, files, exit): {whole_warm - wall_warm:.2f} s (medians of the warm runs: "
        f"whole {whole_warm:.2f} s - wall_time {wall_warm:.2f} s)"
    )
    print(f"imports: {total:.2f} s in all (self times summed)")
    seen = set()
    for label, pkgs in groups.items():
        t = sum(per.get(p, 0.0) for p in pkgs)
        seen.update(pkgs)
        print(f"  {label:28s} {t:6.2f} s")
    rest = sorted(((t, p) for p, t in per.items() if p not in seen), reverse=True)
    print(
        f"  {'everything else':28s} {sum(t for t, _ in rest):6.2f} s  (largest: "
        + ", ".join(f"{p} {t:.2f}" for t, p in rest[:6])
        + ")"
    )


def sweep(b: Bench, trials, repeats):
    """bench_train's S sweep with the vmap launcher: (per-trial overhead s, per-trial train s)."""
    overs, trains = [], []
    for i in range(repeats):
        folder = b.scratch / f"sweep-{i}"
        folder.mkdir()
        wall, info = bt.sweep_process(trials, "vmap", folder=folder, env=b.env)
        deadline = time.perf_counter() + PNG_TIMEOUT
        while any(folder.rglob(PENDING)) and time.perf_counter() < deadline:
            time.sleep(0.05)
        if info["completed"] != trials:
            raise Failed(f"S{trials}: {info['completed']}/{trials} trials completed")
        overs.append((wall - info["train"] - info["compile"]) / trials)
        trains.append(info["train"] / trials)
        print(
            f"  S{trials} sweep {i + 1}/{repeats}: whole {wall:.1f} s, compile "
            f"{info['compile']:.1f} s, train {info['train']:.1f} s, per trial else "
            f"{overs[-1]:.3f} s",
            flush=True,
        )
    return statistics.median(overs), statistics.median(trains)


def fmt(xs):
    if not xs:
        return "-", "-"
    return f"{statistics.median(xs):.2f}", (
        f"{min(xs):.2f}-{max(xs):.2f}" if len(xs) > 1 else "(one)"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="measured turns of every command")
    ap.add_argument("--profile", action="store_true", help="where a warm run's time goes")
    ap.add_argument("--sweep", action="store_true", help="also the S sweep's per-trial overhead")
    ap.add_argument("--trials", type=int, default=64, help="trials of --sweep (a multiple of 16)")
    ap.add_argument("--skip-torch", action="store_true", help="leave out the PyTorch scripts")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error(f"--repeats {args.repeats}: at least 1")
    if args.trials < 16 or args.trials % 16:
        ap.error(f"--trials {args.trials}: a multiple of 16 (4 learning rates x 4 weight decays)")
    if not RUNNER:
        sys.exit("no `runner` command: run `make .venv/.installed-stamp` first")

    versions = venv_versions()
    has_torch = versions.get("torch") is not None and not args.skip_torch
    scratch = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    b = Bench(scratch)
    cmds = {}
    cmds["baseline"] = lambda: b.process([PYTHON, "-c", BASELINE])
    cmds["warm"] = lambda: b.runner("default-warm")

    def cold():
        # A new structure is not needed: with both caches empty nothing compiled is found.
        jax_dir = scratch / f"jax-cold-{b.n}"
        r = b.runner("default-cold", env={**b.env, "RUNNER_JAX_CACHE": str(jax_dir)})
        shutil.rmtree(jax_dir, ignore_errors=True)
        return r

    cmds["cold"] = cold
    cmds["w1"] = lambda: b.runner("w1-warm", bt.w1_overrides())
    npz = scratch / "w1.npz"
    if has_torch:
        script = bt.TORCH_SCRIPT.format(root=str(ROOT), bench=str(BENCH), epochs=bt.W1["epochs"])
        lean = bt.TORCH_SCRIPT_NPZ.format(bench=str(BENCH), npz=str(npz), epochs=bt.W1["epochs"])
        cmds["torch"] = lambda: b.process([PYTHON, "-c", script])
        cmds["torch_npz"] = lambda: b.process([PYTHON, "-c", lean])
    results = {k: [] for k in cmds}
    failed = {}
    try:
        print(f"machine: {machine(versions)}")
        print(f"scratch folder: {scratch}; {args.repeats} repeat(s)", flush=True)
        load = os.getloadavg()[0]
        if load > 0.5 * (os.cpu_count() or 1):
            print(
                "the machine is busy: the numbers are only indicative (PyTorch's multi-threaded "
                "loop slows down by tens of times when its threads are not all running)",
                flush=True,
            )
        # Unmeasured first runs: fill the JAX cache (default and W1), generate MNIST-1D into
        # RUNNER_CACHE_DIR, write W1's arrays for the lean PyTorch script, and bring torch's
        # files into the page cache.
        t0 = time.perf_counter()
        for k in ("baseline", "warm", "w1"):
            cmds[k]()
        if has_torch:
            save = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import bench_train as b; "
            b.process([PYTHON, "-c", save + f"b.save_w1_arrays({str(npz)!r})"])
            cmds["torch_npz"]()
        print(f"first runs (unmeasured): {time.perf_counter() - t0:.1f} s", flush=True)
        for i in range(args.repeats):
            for k, fn in cmds.items():
                if k in failed:
                    continue
                try:
                    results[k].append(fn())
                except Failed as e:
                    failed[k] = str(e)
                    print(f"{k}: failed, left out from now on\n{e}", flush=True)
            done = {k: f"{v[-1]['wall']:.2f}" for k, v in results.items() if v}
            print(f"repeat {i + 1}/{args.repeats}: {done}", flush=True)
        report(results, failed, has_torch, args.skip_torch)
        if max(load, os.getloadavg()[0]) > 0.5 * (os.cpu_count() or 1):
            print("(a busy machine: met / NOT met above say little; rerun it on a quiet one)")
        if args.profile:
            warm = results["warm"]
            whole = statistics.median(r["wall"] for r in warm) if warm else float("nan")
            wall = statistics.median(r["metrics"]["wall_time"] for r in warm) if warm else whole
            profile(b, whole, wall)
        if args.sweep:
            print(f"\n## S{args.trials} (bench_train.py's sweep, vmap launcher)", flush=True)
            over, train = sweep(b, args.trials, args.repeats)
            met = over <= S64_OVERHEAD * S64_SLACK
            note = "" if args.trials == 64 else f" (S{args.trials}: not comparable to S64)"
            print(
                f"per-trial overhead beyond training and compile: {over:.3f} s (train "
                f"{train:.3f} s a trial); docs/performance.md S64: {S64_OVERHEAD} s; target: does "
                f"not grow (<= {S64_OVERHEAD * S64_SLACK:.3f} s, 10 % for noise): "
                f"{'met' if met else 'NOT met'}{note}"
            )
        else:
            print(
                f"\nS64 per-trial overhead: not measured (--sweep); docs/performance.md: "
                f"{S64_OVERHEAD} s a W1 trial (bench_train.py --trials 64)"
            )
        print(f"machine at the end: load {os.getloadavg()[0]:.1f}")
    except Failed as e:
        sys.exit(f"failed:\n{e}")
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def report(results, failed, has_torch, skipped):
    def walls(k):
        return [r["wall"] for r in results.get(k, [])]

    def metric(k, key):
        return [r["metrics"][key] for r in results.get(k, []) if key in (r["metrics"] or {})]

    def med(xs):
        return statistics.median(xs) if xs else None

    pngs = [r["png"] for r in results["warm"] if r["png"] is not None]
    pending = any(r["pending"] for r in results["warm"])
    rows = [
        (f'`python -c "{BASELINE}"`', walls("baseline")),
        ("default `runner`, warm: whole process", walls("warm")),
        ("  its train_time (metrics.json)", metric("warm", "train_time")),
        ("  its compile_time (metrics.json)", metric("warm", "compile_time")),
        ("  its wall_time (metrics.json)", metric("warm", "wall_time")),
        (
            "  curves.png on disk, from the start"
            + ("" if pending else " (no .plots-pending seen: drawn before exit)"),
            pngs,
        ),
        ("default `runner`, cold (empty JAX cache): whole", walls("cold")),
        ("  its compile_time (metrics.json)", metric("cold", "compile_time")),
        ("W1 `runner`, warm: whole process", walls("w1")),
        ("  its train_time (metrics.json)", metric("w1", "train_time")),
    ]
    if has_torch:
        rows += [
            ("W1 PyTorch script (bench_train.TORCH_SCRIPT)", walls("torch")),
            ("W1 PyTorch script, arrays from an .npz", walls("torch_npz")),
        ]
    n = max((len(v) for v in results.values()), default=0)
    print(f"\n## Medians of {n} (seconds; every command once per repeat, in turn)\n")
    print(f"| {'measurement':62s} | median | {'range':>11s} |")
    print(f"| {'-' * 62} | -----: | {'-' * 10}: |")
    for name, xs in rows:
        m, r = fmt(xs)
        print(f"| {name:62s} | {m:>6s} | {r:>11s} |")

    base, warm, train = (
        med(walls("baseline")),
        med(walls("warm")),
        med(metric("warm", "train_time")),
    )
    cold, w1 = med(walls("cold")), med(walls("w1"))
    ratios = [
        (
            "default warm / (import + its train_time)",
            warm / (base + train) if None not in (base, warm, train) else None,
            1.3,
        ),
        ("default cold / warm", cold / warm if None not in (cold, warm) else None, 2.0),
    ]
    if has_torch:
        tp, tn = med(walls("torch")), med(walls("torch_npz"))
        ratios.append(("W1 warm / PyTorch script", w1 / tp if None not in (w1, tp) else None, 0.7))
        ratios.append(
            (
                "W1 warm / PyTorch script, arrays from .npz",
                w1 / tn if None not in (w1, tn) else None,
                None,
            )
        )
    if warm and pngs:
        ratios.append(("curves.png on disk / default warm", statistics.median(pngs) / warm, None))
    print("\n## Ratios (of the medians) against issue 16's targets\n")
    print(f"| {'ratio':48s} | value | target | |")
    print(f"| {'-' * 48} | ----: | -----: | --- |")
    for name, v, target in ratios:
        value = f"{v:.2f}" if v is not None else "-"
        if target is None:
            t, verdict = "", "(info)"
        else:
            t = f"<= {target:g}"
            verdict = "-" if v is None else ("met" if v <= target else "NOT met")
        print(f"| {name:48s} | {value:>5s} | {t:>6s} | {verdict} |")
    if skipped:
        print("\nW1 / PyTorch: left out (--skip-torch)")
    elif not has_torch:
        print(
            "\nW1 / PyTorch: left out, torch is not installed in the venv "
            "(`make .venv/.bench-stamp`, or `.venv/bin/python -m pip install torch==2.13.0`)"
        )
    for k, e in failed.items():
        print(f"\n{k} failed (its medians cover the repeats before): {e.splitlines()[0]}")


if __name__ == "__main__":
    main()
