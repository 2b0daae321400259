"""The engine of hydra/launcher=vmap (hydra_plugins/runner_launcher): a batch of Hydra jobs in,
one JobReturn per job out, as Hydra's basic launcher returns them.

1. Compose each job's config as the basic launcher does (same job numbers and directories).
   Hydra composes every job from the YAML files (docs/performance.md); jobs whose overrides differ
   only in the values of plain keys are derived from a template instead
   (runner.sweep.compose.Composer): the same config, at a fraction of the cost.
2. Validate it and key it by structure (runner.vectorized.group_key); jobs with equal keys form
   groups of up to max_members (on a CPU fewer: vectorized.group_size), each trained as one
   vmapped program.
3. Run every job in job order: a job of a group only writes its run directory from its
   precomputed Result (runner.task.task(result=...)), through _write_job, which does what
   Hydra's run_job does without its copies of the config (~4x less time a job); any other job,
   or one whose group could not be built, trains alone through Hydra's run_job and the
   ordinary task function, which also reports bad input as usual.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from runner.sweep.compose import as_plain, composer_of

log = logging.getLogger(__name__)


def _chunks(items: list, size: int) -> list[list]:
    """items in the fewest chunks of at most `size`, as equal as can be (10 by 8: 5 and 5,
    not 8 and 2), so that padding the shorter ones by one gives every chunk the same program."""
    k = -(-len(items) // max(1, size))
    q, r = divmod(len(items), max(1, k))
    bounds = [i * q + min(i, r) for i in range(k + 1)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:])]


def _plan(task_cfgs: list, max_members: int, plain: list | None = None):
    """[(job indices, Configs, Dataset, members to pad to)] of the groups worth vectorising
    (two or more jobs), each at most vectorized.group_size long; task_cfgs: each job's
    compose.task_config; plain: each one's compose.as_plain (validated instead where not None)."""
    from runner.config import validate
    from runner.data import load_dataset
    from runner.datasets import cache_in
    from runner.memory import check_memory
    from runner.vectorized import group_key, group_size, padded_size, plan_groups

    valid, keys, data = [], [], {}
    for i, tc in enumerate(task_cfgs):
        try:
            cfg = validate(plain[i] if plain and plain[i] is not None else tc)
            name = repr(cfg.data)
            if name not in data:
                with cache_in(cfg.paths):
                    data[name] = load_dataset(cfg.data)
            check_memory(cfg, data[name])  # too large: it runs alone, and the task says so
            valid.append((cfg, data[name]))
            keys.append(group_key(cfg, data[name]))
        except Exception:  # noqa: BLE001 - the job then runs alone and reports its own error
            valid.append(None)
            keys.append(None)
    plan = []
    for group in plan_groups(keys):
        if len(group) < 2:
            continue
        cfg, ds = valid[group[0]]
        try:
            size = group_size(cfg, ds, max_members)
        except Exception:  # noqa: BLE001 - fit_group reports what is wrong with the model
            size = max_members
        chunks = _chunks(group, size)
        pad = len(chunks[0])
        # Budgeted trials (a rung's survivors, continued) come in counts that change from
        # batch to batch: padding to a power of two keeps them on a few compiled programs.
        if any(valid[i][0].trainer.stop_at or valid[i][0].trainer.resume for i in group):
            pad = padded_size(pad, max(size, pad))
        for chunk in chunks:
            if len(chunk) >= 2:
                plan.append((chunk, [valid[i][0] for i in chunk], ds, pad))
    return plan


def _job_dir(sc) -> Path:
    """The folder Hydra's run_job gives this job. A literal hydra.sweep.dir and a subdir of
    ${hydra.job.num} (runner's conf) are read as they are: resolving the interpolation costs
    ~1 ms a job."""
    sweep = sc.hydra.sweep
    folder, sub = sweep._get_node("dir")._value(), sweep._get_node("subdir")._value()
    if isinstance(folder, str) and "${" not in folder and sub == "${hydra.job.num}":
        return Path(folder) / str(sc.hydra.job.num)
    return Path(str(sweep.dir)) / str(sweep.subdir)


def _open_folders(idx, configs, task_cfgs, texts=None, dirs=None) -> list:
    """Each member's run folder while its group trains: .hydra/config.yaml and overrides.yaml
    as run_job writes them, and a `running` metrics.json (with a heartbeat, the epochs so far
    and curves.csv: runner.runjob.Keeper), so that `runner compare` shows the group's
    progress and a reader can tell a live group from a killed one. texts: each job's
    config.yaml where known already (None: from task_cfgs); dirs: each job's _job_dir, where
    known already."""
    from runner import rundir
    from runner.fastyaml import dump_yaml
    from runner.runjob import Keeper

    keepers = []
    for i in idx:
        sc = configs[i]
        d = dirs[i] if dirs else _job_dir(sc)
        (d / ".hydra").mkdir(parents=True, exist_ok=True)
        # Final already, what run_job writes (OmegaConf.to_yaml, emitted by libyaml: byte for
        # byte the same for runner's configs, tested): _write_job adds hydra.yaml (where a group
        # fails and its jobs run alone, Hydra's run_job writes all three again).
        config = texts[i] if texts and texts[i] is not None else dump_yaml(task_cfgs[i])
        rundir.atomic_write(d / rundir.CONFIG, config, durable=False)
        overrides = dump_yaml(sc.hydra.overrides.task)
        rundir.atomic_write(d / rundir.OVERRIDES, overrides, durable=False)
        keepers.append(Keeper(d))
    return keepers


def _train_group(group, configs, task_cfgs, texts=None, dirs=None, on_dispatch=None) -> dict:
    """{job index: (its validated Config, its Result)} for one planned group; empty if the
    group fails to build or train (its jobs then run one by one and each reports what went
    wrong). on_dispatch: vectorized.fit_group's (called once its first epoch computes)."""
    from runner import tracker, vectorized
    from runner.progress import Display
    from runner.shell import describe

    idx, cfgs, ds, pad_to = group
    dirs = dirs or [_job_dir(sc) for sc in configs]
    nums = [int(configs[i].hydra.job.num) for i in idx]
    label = (
        f"jobs {nums[0]}-{nums[-1]}"
        if nums == list(range(nums[0], nums[-1] + 1))
        else f"{len(nums)} jobs"
    )
    try:  # trainer.resume=true: the checkpoints the members continue, read before any write
        from runner.runjob import continuation

        resumes = [
            continuation(dirs[i], c) if c.trainer.resume else None for i, c in zip(idx, cfgs)
        ]
    except Exception as e:  # noqa: BLE001 - each job alone reports its own error
        log.warning("%s: not vectorised (%s); running them one by one", label, describe(e))
        return {}
    done = [r.meta["tracker"]["history"] if r else [] for r in resumes]
    epochs = max((c.trainer.stop_at or c.trainer.epochs) - len(d) for c, d in zip(cfgs, done))
    keepers = _open_folders(idx, configs, task_cfgs, texts, dirs)
    with Display(
        epochs, enabled=cfgs[0].trainer.progress, title=f"{label} (vmap x{len(idx)})"
    ) as display:

        def on_start(spec, n_params, compile_time, n):
            for k, c, d in zip(keepers, cfgs, done):
                k.start(tracker.metric_name(spec), c.trainer.epochs, d)
            display.advance(0, f"{n} x {n_params:,} params, compiled in {compile_time:.2f}s")

        def on_epoch(ep, n_active, rows):
            for i, row in rows.items():
                keepers[i].epoch(row)
            display.advance(1, f"{n_active}/{len(rows) or n_active} active")

        def on_warn(member, msg):
            display.warn(f"job {nums[member]}: {msg}")

        try:
            out = vectorized.fit_group(
                cfgs,
                ds,
                on_start=on_start,
                on_epoch=on_epoch,
                on_warn=on_warn,
                on_checkpoint=lambda i, *saved: keepers[i].checkpoint(*saved),
                on_dispatch=on_dispatch,
                pad_to=pad_to,
                resumes=resumes,
            )
        except Exception as e:
            display.warn(f"{label}: not vectorised ({describe(e)}); running them one by one")
            log.debug("vectorised group failed", exc_info=True)
            return {}
    return {i: (c, r) for i, c, r in zip(idx, cfgs, out)}


def _lean(sc) -> bool:
    """Whether _write_job may stand in for Hydra's run_job for this job: runner's settings of
    what run_job would do beyond it (no chdir, .hydra/ written, no job logging to set up)."""
    try:
        return (
            not sc.hydra.job.chdir
            and sc.hydra.output_subdir == ".hydra"
            and sc.hydra.runtime.choices.get("hydra/job_logging") == "none"
        )
    except Exception:  # noqa: BLE001 - a config without these nodes: Hydra's run_job
        return False


def _hydra_view(sc):
    """What HydraConfig.set_config(sc) makes: a config of sc's hydra node alone (read-only),
    whose node resolves interpolations through sc; but the node itself, not a copy of it
    (~7 ms a job): sc is this job's own config, and nothing writes to the node from here on."""
    from omegaconf import DictConfig, OmegaConf

    OmegaConf.set_readonly(sc.hydra, True)
    node = sc._get_node("hydra")
    view = DictConfig(content={}, flags={"no_deepcopy_set_nodes": True})
    view["hydra"] = node
    view._set_flag("no_deepcopy_set_nodes", None)
    node._set_parent(sc)
    return view


def _write_job(launcher, sc, task_cfg, cfg, result, job_dir=None, hydra_yaml=None):
    """Hydra's run_job (hydra.core.utils) for a job its group trained: the same HydraConfig,
    files, callbacks and JobReturn, without its two deep copies of the config, its second
    set_config, set_config's copy of the hydra node (_hydra_view), and with hydra.yaml emitted
    by libyaml (fastyaml.dump_yaml). config.yaml and
    overrides.yaml are on disk already (_open_folders). ~15 ms a job against ~60 ms
    (docs/performance.md). job_dir: its _job_dir, where known already; hydra_yaml: what
    writes hydra.yaml's text from the hydra node (None: dump_yaml; the launch passes its
    Composer's TemplateYaml for jobs of a template)."""
    import os

    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import JobReturn, JobRuntime, JobStatus, _flush_loggers, env_override
    from omegaconf import open_dict, read_write

    from runner import rundir
    from runner.fastyaml import dump_yaml
    from runner.task import task

    before = HydraConfig.instance().cfg
    out = os.path.abspath(str(job_dir or _job_dir(sc)))
    with read_write(sc.hydra.runtime), open_dict(sc.hydra.runtime):
        sc.hydra.runtime.output_dir = out
    hydra_cfg = HydraConfig.instance().cfg = _hydra_view(sc)
    try:
        ret = JobReturn(
            overrides=list(sc.hydra.overrides.task),
            cfg=task_cfg,
            hydra_cfg=hydra_cfg,
            working_dir=os.getcwd(),
        )
        text = (hydra_yaml or dump_yaml)(hydra_cfg)
        rundir.atomic_write(Path(out) / rundir.HYDRA, text, durable=False)
        callbacks = launcher.hydra_context.callbacks
        fn = functools.partial(task, result=result, cfg=cfg)
        with env_override(hydra_cfg.hydra.job.env_set):
            callbacks.on_job_start(config=sc, task_function=fn)
            try:
                ret.return_value = fn(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as e:  # noqa: BLE001 - as run_job: the job failed, the sweep goes on
                ret.return_value = e
                ret.status = JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        _flush_loggers()
        callbacks.on_job_end(config=sc, job_return=ret)
        return ret
    finally:
        HydraConfig.instance().cfg = before


SUBDIR = "hydra.sweep.subdir="


def _own_number(config, overrides: list[str], default: int) -> tuple[int, list[str]]:
    """(job number, overrides) of a job. A job that names its folder by number
    (hydra.sweep.subdir=N: the survivors of a hyperband rung, whose numbers are not
    consecutive) gets N as its job number, so its messages and hydra.yaml say N too; while the
    folder follows the number (runner's conf: subdir ${hydra.job.num}) the override is
    dropped, so that such jobs still share a composed template (Composer)."""
    own = [o for o in overrides if o.startswith(SUBDIR) and o[len(SUBDIR) :].isdigit()]
    if not own:
        return default, overrides
    try:
        follows = config.hydra.sweep._get_node("subdir")._value() == "${hydra.job.num}"
    except Exception:  # noqa: BLE001 - a config without the node: keep the override
        follows = False
    kept = [o for o in overrides if o not in own] if follows else overrides
    return int(own[-1][len(SUBDIR) :]), kept


def launch(launcher, job_overrides, initial_job_idx: int):
    """JobReturns in job order. Each group's jobs write their folders once the group has
    trained, while the next group's first epoch computes, so a kill loses at most the group in
    flight and those of the group before it not written yet. After a stop (Ctrl-C, SIGTERM;
    runner.stop) the group in flight writes its members as interrupted and the jobs not started
    are left out: their places in the list are None, and the sweep resumes them later."""
    from hydra.core.utils import configure_log, run_job, setup_globals
    from omegaconf import open_dict

    from runner import stop, vectorized
    from runner.fastyaml import dump_container
    from runner.runtime import enable_compilation_cache, freeze_startup
    from runner.task import task

    del vectorized  # imported for JAX and the core: they are frozen with the rest of start-up
    freeze_startup()
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    configs, task_cfgs = [], []
    composer = composer_of(launcher)
    plain, texts = [], []  # each task config as plain data and its config.yaml, or None
    dirs = []  # each job's folder: resolving hydra.sweep.subdir costs ~0.7 ms a time
    templates = []  # the template each job came from (None: composed in full)
    for i, overrides in enumerate(job_overrides):
        num, overrides = _own_number(config, list(overrides), initial_job_idx + i)
        sc, task_cfg = composer.compose_job(overrides)
        with open_dict(sc):
            sc.hydra.job.id = num
            sc.hydra.job.num = num
        configs.append(sc)
        task_cfgs.append(task_cfg)
        dirs.append(_job_dir(sc))
        templates.append(composer.last_template)
        if len(job_overrides) >= 2:  # for _plan's validate and, as YAML, config.yaml (the
            # text is made first: validate only reads the data, but it is not its to keep)
            plain.append(as_plain(task_cfg))
            texts.append(None if plain[-1] is None else dump_container(plain[-1]))
    plan = _plan(task_cfgs, launcher.max_members, plain) if len(configs) >= 2 else []
    returns: list = [None] * len(configs)

    def run(i, trained=None):
        if trained and _lean(configs[i]):
            t = templates[i]
            emit = None if t is None else functools.partial(composer.hydra_yaml.dump, template=t)
            returns[i] = _write_job(launcher, configs[i], task_cfgs[i], *trained, dirs[i], emit)
            return
        fn = functools.partial(task, result=trained[1]) if trained else launcher.task_function
        returns[i] = run_job(
            hydra_context=launcher.hydra_context,
            task_function=fn,
            config=configs[i],
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)

    # A trained group's folders are written while the next group's first epoch computes
    # (fit_group's on_dispatch): written between the groups, they kept the cores waiting
    # (~70 ms a W1 group of 8; docs/performance.md). Until they are written that group is still
    # in flight: a kill loses its members not written yet, as a kill while writing them did.
    unwritten: list = []  # (job index, (Config, Result)) of the last group trained
    failed: list = []  # what writing them raised, raised again here, not in the next group

    def write_unwritten() -> None:
        with stop.shielded():  # as task's own writes: a second Ctrl-C waits for them
            while unwritten and not failed:
                i, trained = unwritten.pop(0)
                try:
                    run(i, trained)
                except Exception as e:  # noqa: BLE001 - raised by launch, after the group
                    failed.append(e)

    def written() -> None:
        write_unwritten()
        if failed:
            raise failed[0]

    if plan:
        enable_compilation_cache(plan[0][1][0].paths)
    for group in plan:
        if stop.requested():
            break
        trained = _train_group(group, configs, task_cfgs, texts, dirs, write_unwritten)
        written()  # where the group never reached its first epoch
        unwritten.extend(sorted(trained.items()))
    written()
    for i in range(len(configs)):
        if returns[i] is None and not stop.requested():
            run(i)
    return returns
