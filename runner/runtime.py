"""Process set-up done before JAX starts or Hydra composes: XLA's host device count, JAX's
persistent compilation cache, the `unique_dir` resolver behind hydra.run.dir, and the tag that
tells a launcher's job process from the `runner` command that started it."""
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
    group shards its members over them (runner.vectorized); measured on 2 cores, even a single
    run trains ~1.8x faster this way (docs/performance.md). GPUs are unaffected."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
        os.environ["XLA_FLAGS"] = f"{flags} {count}".strip()


_CLAIMED: dict[str, str] = {}


def unique_dir(base: str) -> str:
    """hydra.run.dir's resolver (conf/config.yaml): a folder of this run's own, `base` or the
    first free base-1, base-2, ... (runner.rundir.claim). Remembered per process: Hydra resolves
    hydra.run.dir more than once."""
    if base not in _CLAIMED:
        from runner.rundir import claim
        _CLAIMED[base] = str(claim(base))
    return _CLAIMED[base]


def register_unique_dir() -> None:
    from omegaconf import OmegaConf
    _CLAIMED.clear()  # a new command in this process claims a new folder
    OmegaConf.register_new_resolver("unique_dir", unique_dir, replace=True)


def enable_compilation_cache() -> None:
    """Reuse compiled programs across processes: a repeated `runner` command skips most of its
    compile time. JAX skips programs that compile in under 1 s unless the threshold is lowered,
    and most of ours are that small."""
    import jax
    path = os.environ.get("RUNNER_JAX_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "runner", "jax"))
    if path.lower() in ("", "0", "off", "none"):
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
