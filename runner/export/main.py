"""send finished runs or sweeps to TensorBoard or MLflow

`runner export RUN_OR_SWEEP --to tensorboard|mlflow`: what `logger=tensorboard|mlflow` does
live, for runs that finished before (or without) a logger. PATH is a run folder, a sweep folder
(each trial) or any folder above runs. A folder that cannot be sent (damaged, still running) is
one warning line and is skipped; the others are sent. Exit codes: 0 all sent, 1 some skipped,
2 bad input (no such folder, no runs under it, unknown --to)."""

from __future__ import annotations

import sys
from pathlib import Path

from runner.shell import OneLineParser, UsageError, subcommand

EXIT_SKIPPED = 1


def _parser() -> OneLineParser:
    p = OneLineParser(
        prog="runner export",
        description="Send finished runs to TensorBoard or MLflow (what logger=tensorboard|mlflow "
        "does during a run). A sweep's trials become one HParams table (TensorBoard) or child "
        "runs of one parent run (MLflow).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="a run folder, a sweep folder, ...")
    p.add_argument(
        "--to",
        required=True,
        metavar="LOGGER",
        help="tensorboard, mlflow, or both: tensorboard,mlflow",
    )
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow store (default: sqlite:///<the run's paths.outputs>/mlflow.db)",
    )
    p.add_argument(
        "--experiment", metavar="NAME", help="MLflow experiment (default: the run's config name)"
    )
    p.add_argument(
        "--dir", default="tensorboard", help="event files' folder in each run (tensorboard)"
    )
    return p


def run_dirs(root: Path) -> list[Path]:
    """Run folders (with .hydra/) at or under root, trial 10 after trial 9."""
    import re

    from runner import rundir

    key = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]
    return sorted(rundir.run_dirs_under(root), key=key)


def _backends(text: str) -> list[str]:
    from runner.export import BACKENDS

    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in BACKENDS]
    if bad or not names:
        raise UsageError(
            f"runner export: --to {bad[0] if bad else repr(text)}: unknown logger; choose "
            f"{' or '.join(BACKENDS)} (both: --to tensorboard,mlflow)"
        )
    return list(dict.fromkeys(names))


def _where(backend: str, entry: dict) -> str:
    if backend == "tensorboard":
        return f"{entry['dir']} ({entry['scalars']} points)"
    parent = f", child of {entry['parent_run_id']}" if entry.get("parent_run_id") else ""
    return f"run {entry['run_id']} (experiment {entry['experiment_id']}{parent})"


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    backends = _backends(args.to)
    dirs = []
    for p in args.paths:
        root = Path(p)
        if not root.is_dir():
            raise UsageError(f"runner export: {p}: no such folder")
        found = run_dirs(root)
        if not found:
            raise UsageError(f"runner export: {p}: no run folders in it (a run has .hydra/)")
        dirs += found
    from runner.export import ExportError, MissingExtra, Options, export_run

    opts = Options(
        tensorboard_dir=args.dir, tracking_uri=args.tracking_uri, experiment=args.experiment
    )
    sent, skipped, stores = 0, 0, set()
    for backend in backends:
        for d in dirs:
            try:
                entry = export_run(d, backend, opts)
            except MissingExtra:
                raise
            except ExportError as e:
                skipped += 1
                print(f"runner: warning: {backend}: {e} (skipped)", file=sys.stderr)
                continue
            sent += 1
            stores.add(entry.get("tracking_uri", ""))
            print(f"{d} -> {backend}: {_where(backend, entry)}", flush=True)
    total = len(dirs) * len(backends)
    print(f"sent {sent} of {total}" + (f", skipped {skipped}" if skipped else ""))
    if "tensorboard" in backends and sent:
        print(f"view: tensorboard --logdir {' '.join(args.paths)}")
    for uri in sorted(s for s in stores if s):
        print(f"view: mlflow ui --backend-store-uri {uri}")
    return EXIT_SKIPPED if skipped else 0


def main(argv: list[str] | None = None) -> int:
    from runner.export import ExportError

    return subcommand("export", argv, run, expected=(ExportError,))
