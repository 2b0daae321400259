"""provenance.json: what produced a run, so that two runs' numbers can be told apart by more than
their configs: the git commit of the project it was run from (and whether the tree was dirty,
with the diff when small), runner's install and the versions of the libraries that compute,
Python, the JAX devices, the XLA/JAX environment variables, the host, the command line and the
time. `runner compare --diff` shows where two or more runs differ in it.

Which git repository: the working directory the command was started from (Hydra's
runtime.cwd), i.e. the project the user experiments in, where their own conf/, data and
scripts live: `git`. When runner itself is imported from a source checkout (an editable
install) other than that repository, the checkout's state is `runner_git` too, since its code
trains the run; it is null from the same repository (developing runner) and for an ordinary
install (`runner_install` says where runner was imported from). No git, not a repository, a
timeout: null fields, never an error. Dirty means tracked files changed (staged or not);
untracked files are only counted (`git diff HEAD` does not show them).

Cost: everything but the time is collected once per process and cached (a vectorised sweep
writes 64 trials from one process: git runs once, not 64 times); `python -m
runner.provenance` prints it and measures both. The `runner` command starts collecting it
(prefetch) in a thread as it starts, so that git's ~0.1 s overlaps the imports and the
training instead of adding to them; collect() waits for that thread. Imports only the
standard library; JAX only if the process has already imported it (a training process has):
reading the devices must not start JAX elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from runner import rundir

PACKAGES = ("runner", "jax", "jaxlib", "optax", "flax", "hydra-core", "omegaconf", "numpy")
ENV_VARS = ("XLA_FLAGS", "JAX_PLATFORMS", "JAX_ENABLE_X64", "CUDA_VISIBLE_DEVICES")
DIFF_LIMIT = 20_000  # bytes of `git diff HEAD` kept in the file; larger: only size and hash
GIT_TIMEOUT_S = 3.0
VERSION = 1  # of this file's layout

_CACHE: dict = {}  # cwd -> the per-process part of collect()
_PENDING: dict[str, threading.Thread] = {}  # cwd -> the prefetch() collecting it
_DEVICES: list = []


def _git(cwd, *args: str) -> str | None:
    """A git command's stdout, or None (no git, not a repository, an error, a timeout)."""
    env = dict(
        os.environ,
        GIT_OPTIONAL_LOCKS="0",  # `git status` must not take index.lock from the user's git
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
    )
    try:
        p = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        return None
    return p.stdout.decode("utf-8", errors="replace")


def git_info(cwd) -> dict | None:
    """The repository holding `cwd`: root, commit, branch, dirty (tracked files changed:
    staged or not), untracked (how many files), and for a dirty tree `git diff HEAD` (its text
    if under DIFF_LIMIT bytes) with its size and sha256. None if `cwd` is in no repository."""
    root = _git(cwd, "rev-parse", "--show-toplevel")
    if root is None:
        return None
    info = {
        "root": root.strip(),
        "commit": None,
        "branch": None,
        "dirty": None,
        "untracked": None,
        "diff": None,
        "diff_bytes": None,
        "diff_sha256": None,
    }
    status = _git(cwd, "status", "--porcelain=v2", "--branch")
    if status is None:
        return info
    changed = untracked = 0
    for line in status.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split(" ", 2)[2]
            info["commit"] = None if oid == "(initial)" else oid  # no commit yet
        elif line.startswith("# branch.head "):
            head = line.split(" ", 2)[2]
            info["branch"] = None if head == "(detached)" else head
        elif line.startswith("? "):
            untracked += 1
        elif line[:2] in ("1 ", "2 ", "u "):
            changed += 1
    info["dirty"], info["untracked"] = changed > 0, untracked
    if not changed:
        info["diff_bytes"] = 0
    elif info["commit"]:
        diff = _git(cwd, "diff", "HEAD", "--no-color", "--no-ext-diff")
        if diff is not None:
            blob = diff.encode("utf-8")
            info["diff_bytes"] = len(blob)
            info["diff_sha256"] = hashlib.sha256(blob).hexdigest()
            if len(blob) <= DIFF_LIMIT:
                info["diff"] = diff
    return info


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _runner_source() -> tuple[str, str]:
    """("source", the checkout) when runner is imported from a source tree (an editable
    install, or run from the checkout), else ("installed", its site-packages folder)."""
    import runner

    here = Path(runner.__file__).resolve().parent.parent
    if {"site-packages", "dist-packages"} & set(here.parts):
        return "installed", str(here)
    return "source", str(here)


def command() -> str:
    """The command line, shell-quoted; the `runner` console script by its name (`executable`
    says which environment it ran in)."""
    argv = list(sys.argv) or [""]
    if os.path.basename(argv[0]) == "runner":
        argv[0] = "runner"
    return shlex.join(argv)


def _static(cwd: str) -> dict:
    """The part of collect() that does not change within a process."""
    git = git_info(cwd)
    install, source = _runner_source()
    runner_git = None
    if install == "source":
        # runner's own checkout, unless it is the project's repository (already in `git`)
        mine = git_info(source)
        if mine is not None and (git is None or mine["root"] != git["root"]):
            runner_git = mine
    return {
        "version": VERSION,
        "command": command(),
        "cwd": cwd,
        "host": rundir.hostname(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "versions": _versions(),
        "runner_install": f"{install}: {source}",
        "git": git,
        "runner_git": runner_git,
    }


def devices() -> dict | None:
    """JAX's backend, device kind(s) and count; None unless this process already imported JAX
    (importing it here would start JAX in a process that never needed it)."""
    if _DEVICES:
        return _DEVICES[0]
    jax = sys.modules.get("jax")
    if jax is None:
        return None
    try:
        devs = jax.devices()
        kinds = sorted({d.device_kind for d in devs})
        got = {
            "backend": jax.default_backend(),
            "kind": ", ".join(kinds),
            "count": len(devs),
            "processes": jax.process_count(),
        }
    except Exception:  # noqa: BLE001 - provenance never stops a run
        return None
    _DEVICES.append(got)
    return got


def prefetch(cwd=None) -> None:
    """Start collecting the per-process part of collect(cwd) (git's commands, the versions) in
    a thread, to overlap whatever the process does next. Not a daemon thread: a process that
    ends before writing a run still waits for it (at most git's timeouts) rather than leaving
    git running behind it. A failure there is not kept: collect() then tries again itself."""
    cwd = os.path.abspath(cwd or os.getcwd())
    if cwd in _CACHE or cwd in _PENDING:
        return

    def work():
        with contextlib.suppress(Exception):
            _CACHE[cwd] = _static(cwd)

    thread = threading.Thread(target=work, name="runner-provenance")
    _PENDING[cwd] = thread
    thread.start()


def collect(cwd=None) -> dict:
    """This process's provenance (a JSON-ready dict). `cwd`: the folder whose git repository
    is recorded (default: the current directory). Cached per cwd, except the time."""
    cwd = os.path.abspath(cwd or os.getcwd())
    pending = _PENDING.pop(cwd, None)
    if pending is not None:
        pending.join()
    if cwd not in _CACHE:
        _CACHE[cwd] = _static(cwd)
    static = _CACHE[cwd]
    out = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out.update(static)
    out["devices"] = devices()
    out["env"] = {k: os.environ.get(k) for k in ENV_VARS}
    return out


def write(run_dir, cwd=None, resumed: bool = False) -> dict:
    """Write run_dir/provenance.json (atomically). `resumed`: the run was continued by this
    process; the earlier provenance (and theirs) go to its `previous` list, newest first."""
    try:
        data = collect(cwd)
    except Exception as e:  # noqa: BLE001 - a finished run is kept whatever went wrong here
        data = {"error": f"{type(e).__name__}: {e}"}
    path = Path(run_dir) / rundir.PROVENANCE
    if resumed:
        old = rundir.read_provenance(run_dir)
        if old.ok:
            earlier = old.data.pop("previous", None)
            data["previous"] = [old.data] + (earlier if isinstance(earlier, list) else [])
    rundir.write_json(path, data)
    return data


def clear_cache() -> None:
    for thread in list(_PENDING.values()):
        thread.join()
    _PENDING.clear()
    _CACHE.clear()
    _DEVICES.clear()


def measure(n: int = 64) -> tuple[float, float]:
    """Seconds for collect() cold (cache cleared) and cached (mean of n): the per-trial cost
    a sweep pays."""
    clear_cache()
    t0 = time.perf_counter()
    collect()
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        collect()
    return cold, (time.perf_counter() - t0) / n


if __name__ == "__main__":
    import json

    print(json.dumps(collect(), indent=2))
    cold, warm = measure()
    print(f"collect(): cold {cold * 1e3:.1f} ms, cached {warm * 1e6:.1f} us", file=sys.stderr)
