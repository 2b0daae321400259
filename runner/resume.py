"""`runner resume RUN`: continue a run that was stopped (Ctrl-C, SIGTERM, a kill, a crash) from
its checkpoint.npz, in the same folder, with the config it was started with. The epochs after
the checkpoint are trained again exactly as the uninterrupted run trains them: the same curves,
best epoch and final metrics, bit for bit on a CPU (tests/test_resume.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from runner.shell import OneLineParser, UsageError, subcommand


class ResumeError(Exception):
    """Why a folder cannot be resumed: one line for the user."""


def _parser() -> OneLineParser:
    p = OneLineParser(
        prog="runner resume",
        description="Continue a stopped run from its checkpoint, in its folder.",
    )
    p.add_argument("run", help="the run's folder (outputs/DATE/TIME, or a sweep's job folder)")
    return p


def _check_folder(run_dir: Path) -> None:
    """Refuse what cannot be resumed: not a run, finished, or still running."""
    from runner import rundir

    if not (run_dir / rundir.CONFIG).is_file():
        raise ResumeError(f"{run_dir}: not a run folder (no {rundir.CONFIG})")
    read = rundir.read_metrics(run_dir)
    status = rundir.status_of(read.data) if read.ok else None
    if status == rundir.PRUNED and (run_dir / rundir.CHECKPOINT).is_file():
        raise ResumeError(
            f"{run_dir}: status pruned at epoch {read.data.get('pruned_at')} (by "
            f"{read.data.get('pruned_by')}): continue it with its command line plus "
            f"trainer.resume=true hydra.run.dir={run_dir} and a later trainer.stop_at (0: to "
            f"the end)"
        )
    if status in rundir.FINAL and status != rundir.INTERRUPTED:
        raise ResumeError(f"{run_dir}: status {status}: nothing to resume")
    if status == rundir.RUNNING:
        raise ResumeError(
            f"{run_dir}: still running (process {read.data.get('pid')} on "
            f"{read.data.get('host')}); stop it first"
        )


def run(argv: list[str]) -> int:
    from runner import runtime

    args = _parser().parse_args(argv)
    run_dir = Path(args.run)
    if not run_dir.exists():
        raise UsageError(f"runner resume: {args.run}: no such folder")
    _check_folder(run_dir)
    from runner import rundir

    ckpt_path = run_dir / rundir.CHECKPOINT
    if not ckpt_path.is_file():
        raise ResumeError(
            f"{run_dir}: no {rundir.CHECKPOINT} (written every trainer.checkpoint "
            f"epochs and when Ctrl-C/SIGTERM stops a run): run it again instead"
        )
    from omegaconf import OmegaConf

    from runner.config import validate
    from runner.data import load_dataset

    try:
        node = OmegaConf.load(run_dir / rundir.CONFIG)
    except Exception as e:  # noqa: BLE001 - a damaged config is one line naming it
        raise ResumeError(f"{run_dir / rundir.CONFIG}: not a readable config ({e})") from None
    cfg = validate(node)
    if cfg.trainer.cv_folds >= 2:
        raise ResumeError(
            f"{run_dir}: a k-fold run (trainer.cv_folds={cfg.trainer.cv_folds}) "
            f"is not checkpointed: run it again instead"
        )
    from runner.checkpoint import read_checkpoint

    arrays, meta = read_checkpoint(ckpt_path)
    from runner.datasets import cache_in

    with cache_in(cfg.paths):  # the saved run's paths.cache
        ds = load_dataset(cfg.data)

    runtime.host_devices()  # before JAX starts, as for `runner`
    from rich.console import Console

    from runner import app, provenance, runjob, stop
    from runner.plots import in_background
    from runner.progress import Display, summary_line, summary_table

    runtime.enable_compilation_cache(cfg.paths)  # the saved run's paths.jax_cache
    stop.install()
    resume = app.Resume(arrays=arrays, meta=meta, path=ckpt_path)
    with Display(cfg.trainer.epochs, enabled=cfg.trainer.progress, title="resume") as display:
        result = runjob.train_into(run_dir, cfg, ds, display=display, resume=resume)
    result.metrics["resumed_from_epoch"] = meta["epoch"]
    in_sweep = (run_dir.parent / "multirun.yaml").exists()
    plot = cfg.trainer.plot if isinstance(cfg.trainer.plot, bool) else not in_sweep
    with stop.shielded():
        provenance.write(run_dir, resumed=True)  # the first provenance goes to its "previous"
        app.write_run(
            run_dir,
            result,
            title=f"resumed {run_dir}",
            plot=plot and result.status != "interrupted",
            background=in_background(cfg.trainer.plot_wait, in_sweep, cfg.logger.backends),
        )
    if cfg.logger.backends:  # the saved config's logger=...: send the finished run
        from runner.export import after_run

        after_run(run_dir, cfg.logger, lambda m: print(f"runner: warning: {m}", file=sys.stderr))
    if result.status == "interrupted":
        print(f"runner: {runjob.stop_line(result.metrics, run_dir, True)}", file=sys.stderr)
        return stop.exit_code()
    console = Console()
    console.print(summary_table(result.metrics))
    console.print(summary_line(result.metrics), highlight=False)
    console.print(f"run directory: [bold]{run_dir}[/] (resumed after epoch {meta['epoch']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    from runner.checkpoint import CheckpointError
    from runner.config import ConfigError

    return subcommand("resume", argv, run, expected=(ResumeError, ConfigError, CheckpointError))
