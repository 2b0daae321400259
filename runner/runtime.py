"""Process set-up done before JAX starts or Hydra composes: XLA's host device count, JAX's
persistent compilation cache, the `unique_dir` resolver behind hydra.run.dir, the folders of
conf/paths (folder()), the tag that tells a launcher's job process from the `runner` command
that started it, and the garbage collector paused for a single run's start-up (pause_gc)."""

from __future__ import annotations

import os

# Set by main() to the `runner` process that starts Hydra (host:pid) and inherited by the job
# processes of Hydra's launchers (submitit's local and SLURM jobs, joblib's workers): a task that
# finds another value runs detached from the sweep that shows the progress.
MAIN_PROCESS_ENV = "RUNNER_MAIN_PROCESS"


def process_tag() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def detached() -> bool:
    """True in a job that a launcher runs in another process than the `runner` command."""
    main_process = os.environ.get(MAIN_PROCESS_ENV)
    return bool(main_process) and main_process != process_tag()


def host_devices() -> None:
    """One XLA CPU device per core (before JAX starts; XLA_FLAGS that set a count win). A vmapped
    group shards its members over them (runner.vectorized), and even a single run trains faster
    this way (docs/performance.md). GPUs are unaffected."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
        os.environ["XLA_FLAGS"] = f"{flags} {count}".strip()


# A single run's start-up (importing Hydra, JAX, optax; composing the config) builds ~130k
# objects that live as long as the process, and the collector's ~350 young and 2 full
# collections of a default run walked them for 0.2-0.3 s of its ~3 s (0.01 s now; 2-core machine,
# docs/performance.md). runner.cli pauses the collector from its start;
# runner.task resumes it before training, after moving what start-up built to the collector's
# permanent generation, which later collections skip.
_GC_PAUSED: list[bool] = []


def pause_gc() -> None:
    """Stop the cyclic garbage collector until resume_gc() (a single run's start-up)."""
    import gc

    if gc.isenabled() and not _GC_PAUSED:
        gc.disable()
        _GC_PAUSED.append(True)


def resume_gc() -> None:
    """End pause_gc(): freeze what the process holds (gc.freeze; the ~10k garbage objects that
    start-up leaves go with it, never collected: a one-off) and collect again from here. A
    no-op where nothing paused the collector (runner resume, a sweep, the tests)."""
    if _GC_PAUSED:
        import gc

        _GC_PAUSED.clear()
        gc.freeze()
        gc.enable()


_FROZEN: list[bool] = []


def freeze_startup() -> None:
    """Once per process: move what it holds now (imported modules, JAX's and Hydra's own
    objects) to the collector's permanent generation, as resume_gc does for a single run; a
    sweep's later full collections then skip them (vmap launcher: ~0.3 s of a 92-job sha
    sweep, docs/performance.md). Call it before the sweep's jobs exist: their configs are
    cyclic, and what is frozen is never collected."""
    if not _FROZEN:
        import gc

        _FROZEN.append(True)
        gc.freeze()


_CLAIMED: dict[str, str] = {}


def unique_dir(base: str) -> str:
    """hydra.run.dir's resolver (conf/config.yaml): a folder of this run's own, `base` or the
    first free base-1, base-2, ... (runner.rundir.claim). Remembered per process: Hydra resolves
    hydra.run.dir more than once."""
    if base not in _CLAIMED:
        from runner.rundir import claim

        _CLAIMED[base] = str(claim(os.path.expanduser(base)))  # paths.outputs=~/runs
    return _CLAIMED[base]


def register_unique_dir() -> None:
    from omegaconf import OmegaConf

    _CLAIMED.clear()  # a new command in this process claims a new folder
    OmegaConf.register_new_resolver("unique_dir", unique_dir, replace=True)


# Where no composed config exists (a Config built in Python, a run saved before conf/paths
# existed), the folders are those conf/paths/default.yaml gives in this environment: its
# ${oc.env:...} defaults are the environment-variable fallbacks, kept in that one file.
def default_paths() -> dict:
    """conf/paths/default.yaml resolved in this environment (RUNNER_CACHE_DIR, RUNNER_JAX_CACHE)."""
    from omegaconf import OmegaConf

    from runner.help import conf_dir

    return OmegaConf.to_container(
        OmegaConf.load(conf_dir() / "paths" / "default.yaml"), resolve=True
    )


# RUNNER_CACHE_DIR set but empty has always meant the default folder.
DEFAULT_CACHE = "~/.cache/runner"


def folder(paths, key: str) -> str | None:
    """The folder conf/paths names for `key` (outputs, cache, jax_cache), `~` expanded; paths is
    a runner.config.PathsConfig, or None without a config. jax_cache: None when it is off."""
    from runner.config import JAX_CACHE_OFF

    value = getattr(paths, key, None) if paths is not None else None
    if value is None:
        value = default_paths()[key]
    value = str(value)
    if key == "jax_cache" and value.strip().lower() in JAX_CACHE_OFF:
        return None
    if key == "cache" and not value:
        value = DEFAULT_CACHE
    return os.path.expanduser(value)


def enable_compilation_cache(paths=None) -> None:
    """Reuse compiled programs across processes: a repeated `runner` command skips most of its
    compile time. `paths` is the run's config's (cfg.paths: paths.jax_cache, `off` for none);
    None only where no config exists (see folder()). JAX skips programs that compile in under
    1 s unless the threshold is lowered, and most of ours are that small.

    It also gives the process's programs (runner.core.train.PROGRAMS) runner's store of
    executables, in a folder of JAX's (runner.progstore): a structure seen before then skips
    tracing and lowering too. RUNNER_PROGRAM_STORE=off leaves that store out alone."""
    import jax

    from runner import progstore
    from runner.core import train

    path = folder(paths, "jax_cache")
    train.PROGRAMS.store = progstore.open_store(path)  # None when off: a later command's choice
    if path is None:
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
