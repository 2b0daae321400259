"""The engine of hydra/launcher=vmap (hydra_plugins/runner_launcher): a batch of Hydra jobs in,
one JobReturn per job out, as Hydra's basic launcher returns them.

1. Compose each job's config as the basic launcher does (same job numbers and directories).
2. Validate it and key it by structure (runner.vectorized.group_key); jobs with equal keys form
   groups of up to max_members, each trained as one vmapped program.
3. Run every job through Hydra's run_job in job order: a job of a group only writes its run
   directory from its precomputed Result (runner.cli.task(result=...)); any other job, or one
   whose group could not be built, trains alone through the ordinary task function, which
   also reports bad input as usual.
"""
from __future__ import annotations

import copy
import functools
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _task_config(sweep_config):
    """The job's config without its hydra node: what the task function receives."""
    from omegaconf import open_dict, read_write
    cfg = copy.deepcopy(sweep_config)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _plan(configs: list, max_members: int):
    """[(job indices, Configs, Dataset)] of the groups worth vectorising (two or more jobs)."""
    from runner.config import validate
    from runner.data import load_dataset
    from runner.vectorized import group_key, plan_groups
    valid, keys, data = [], [], {}
    for sc in configs:
        try:
            cfg = validate(_task_config(sc))
            name = repr(cfg.data)
            if name not in data:
                data[name] = load_dataset(cfg.data)
            valid.append((cfg, data[name]))
            keys.append(group_key(cfg, data[name]))
        except Exception:  # noqa: BLE001 - the job then runs alone and reports its own error
            valid.append(None)
            keys.append(None)
    plan = []
    for group in plan_groups(keys):
        for chunk in _chunks(group, max(1, max_members)):
            if len(chunk) >= 2:
                plan.append((chunk, [valid[i][0] for i in chunk], valid[chunk[0]][1]))
    return plan


def _train_groups(plan, configs, sweep_dir) -> dict:
    """{job index: Result} for the planned groups; a group that fails to build or train is
    left out (its jobs then run one by one and each reports what went wrong)."""
    from runner import vectorized
    from runner.cli import _enable_compilation_cache, describe
    from runner.progress import Display
    _enable_compilation_cache()
    results = {}
    for idx, cfgs, ds in plan:
        nums = [int(configs[i].hydra.job.num) for i in idx]
        epochs = max(c.trainer.epochs for c in cfgs)
        label = f"jobs {nums[0]}-{nums[-1]}" if nums == list(range(nums[0], nums[-1] + 1)) \
            else f"{len(nums)} jobs"
        with Display(epochs, enabled=cfgs[0].trainer.progress,
                     title=f"{label} (vmap x{len(idx)})") as display:
            def on_start(spec, n_params, compile_time, n, display=display):
                display.advance(0, f"{n} x {n_params:,} params, compiled in {compile_time:.2f}s")

            def on_epoch(ep, n_active, rows, display=display):
                display.advance(1, f"{n_active}/{len(rows) or n_active} active")

            def on_warn(member, msg, display=display, nums=nums):
                display.warn(f"job {nums[member]}: {msg}")

            try:
                out = vectorized.fit_group(cfgs, ds, on_start=on_start, on_epoch=on_epoch,
                                           on_warn=on_warn)
            except Exception as e:  # noqa: BLE001
                display.warn(f"{label}: not vectorised ({describe(e)}); running them one by one")
                log.debug("vectorised group failed", exc_info=True)
                continue
        results.update(zip(idx, out))
    return results


def launch(launcher, job_overrides, initial_job_idx: int):
    from hydra.core.utils import configure_log, run_job, setup_globals
    from omegaconf import open_dict

    from runner.cli import task
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    configs = []
    for i, overrides in enumerate(job_overrides):
        sc = launcher.hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sc):
            sc.hydra.job.id = initial_job_idx + i
            sc.hydra.job.num = initial_job_idx + i
        configs.append(sc)
    plan = _plan(configs, launcher.max_members) if len(configs) >= 2 else []
    results = _train_groups(plan, configs, sweep_dir) if plan else {}
    returns = []
    for i, sc in enumerate(configs):
        fn = functools.partial(task, result=results[i]) if i in results else launcher.task_function
        returns.append(run_job(hydra_context=launcher.hydra_context, task_function=fn, config=sc,
                               job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    return returns
