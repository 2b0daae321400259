"""provenance.json (runner.provenance) and `runner compare --diff` over it: the fields against
their sources (importlib.metadata, git in a repository made here, sys.argv), the per-process
cache, a real run through runner.task writing the file, and the diff of hand-edited copies of
that run, with a missing and a damaged provenance.json."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from conftest import TINY, run_main, task_config

from runner import provenance, rundir

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="no git")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture()
def repo(tmp_path):
    """A git repository with one commit of train.yaml."""
    r = tmp_path / "project"
    r.mkdir()
    git(r, "init", "-q")
    (r / "train.yaml").write_text("lr: 0.1\n")
    git(r, "add", "train.yaml")
    git(r, "commit", "-q", "-m", "first")
    provenance.clear_cache()
    yield r
    provenance.clear_cache()


# --- collect() -------------------------------------------------------------------------------


@needs_git
def test_fields_match_their_sources_in_a_dirty_repository(repo):
    import jax

    (repo / "train.yaml").write_text("lr: 0.2\n")
    (repo / "scratch.txt").write_text("not tracked\n")
    p = provenance.collect(repo)
    assert p["versions"] == {name: metadata.version(name) for name in provenance.PACKAGES}
    assert p["python"] == platform.python_version()
    assert p["command"] == shlex.join(sys.argv)
    assert p["executable"] == sys.executable
    assert p["host"] == socket.gethostname()
    assert p["cwd"] == str(repo)
    g = p["git"]
    assert g["root"] == str(repo.resolve())
    assert g["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert g["branch"] == git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip()
    assert g["dirty"] is True and g["untracked"] == 1
    diff = git(repo, "diff", "HEAD")
    assert g["diff"] == diff and "+lr: 0.2" in diff
    assert g["diff_bytes"] == len(diff.encode())
    assert g["diff_sha256"] == hashlib.sha256(diff.encode()).hexdigest()
    # runner is imported from its own checkout (editable), not from this repository
    assert p["runner_install"] == f"source: {Path(provenance.__file__).parents[1]}"
    assert p["runner_git"] is not None and p["runner_git"]["root"] != g["root"]
    assert p["devices"] == {
        "backend": jax.default_backend(),
        "kind": jax.devices()[0].device_kind,
        "count": len(jax.devices()),
        "processes": 1,
    }
    assert p["env"]["XLA_FLAGS"] == os.environ.get("XLA_FLAGS")
    assert json.loads(json.dumps(p)) == p  # JSON as it is


def test_command_names_the_console_script_by_its_name(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/opt/env/bin/runner", "-m", "optimizer.lr=0.1,1", "a b"])
    assert provenance.command() == "runner -m optimizer.lr=0.1,1 'a b'"
    monkeypatch.setattr(sys, "argv", ["/opt/runner/__main__.py", "seed=1"])
    assert provenance.command() == "/opt/runner/__main__.py seed=1"


@needs_git
def test_clean_tree_big_diff_no_repository_and_no_git(repo, tmp_path, monkeypatch):
    g = provenance.git_info(repo)
    assert g["dirty"] is False and g["diff"] is None and g["diff_bytes"] == 0
    assert g["untracked"] == 0
    (repo / "train.yaml").write_text("lr: 0.3\n" * 50)
    monkeypatch.setattr(provenance, "DIFF_LIMIT", 100)
    g = provenance.git_info(repo)
    diff = git(repo, "diff", "HEAD").encode()
    assert len(diff) > 100 and g["diff"] is None  # too big to keep: its size and hash
    assert g["diff_bytes"] == len(diff) and g["diff_sha256"] == hashlib.sha256(diff).hexdigest()
    # staged changes count as dirty too
    git(repo, "add", "train.yaml")
    assert provenance.git_info(repo)["dirty"] is True
    plain = tmp_path / "plain"
    plain.mkdir()
    assert provenance.git_info(plain) is None
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no git at all: null, no error
    assert provenance.git_info(repo) is None


@needs_git
def test_collected_once_per_process(repo, monkeypatch):
    calls = []
    real = subprocess.run

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(provenance.subprocess, "run", counting)
    first = provenance.collect(repo)
    n = len(calls)
    assert 1 <= n <= 6  # git rev-parse + status, for this repository and runner's checkout
    for _ in range(64):  # a vectorised sweep's 64 trials
        again = provenance.collect(repo)
    assert len(calls) == n
    assert {k: v for k, v in again.items() if k != "time"} == {
        k: v for k, v in first.items() if k != "time"
    }
    cold, cached = provenance.measure(16)
    assert cached < 1e-3 and cached < cold


def test_resume_keeps_the_earlier_provenance(tmp_path):
    rundir.write_json(tmp_path / rundir.PROVENANCE, {"time": "t0", "previous": [{"time": "t-1"}]})
    provenance.write(tmp_path, resumed=True)
    got = rundir.read_provenance(tmp_path).data
    assert got["command"] == shlex.join(sys.argv)
    assert [p["time"] for p in got["previous"]] == ["t0", "t-1"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failure_collecting_never_costs_the_run(tmp_path, monkeypatch):
    def broken(cwd):
        raise RuntimeError("no hostname")

    provenance.clear_cache()
    monkeypatch.setattr(provenance, "_static", broken)
    provenance.write(tmp_path)
    assert rundir.read_provenance(tmp_path).data == {"error": "RuntimeError: no hostname"}


# --- a real run, and compare --diff ------------------------------------------------------------


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A run folder written by runner.task.task, as Hydra calls it, from a git repository."""
    from runner.task import task

    base = tmp_path_factory.mktemp("prov")
    project = base / "project"
    project.mkdir()
    if shutil.which("git"):
        git(project, "init", "-q")
        (project / "notes.txt").write_text("x\n")
        git(project, "add", "notes.txt")
        git(project, "commit", "-q", "-m", "first")
    run_dir = base / "runs" / "a"
    cfg = task_config(TINY, run_dir, project)
    provenance.clear_cache()
    task(cfg)
    return run_dir, project


def test_a_run_writes_provenance(real_run):
    run_dir, project = real_run
    got = rundir.read_provenance(run_dir)
    assert got.ok, got.error
    p = got.data
    assert p["cwd"] == str(project)  # Hydra's runtime.cwd: where the user ran from
    if shutil.which("git"):
        assert p["git"]["commit"] == git(project, "rev-parse", "HEAD").strip()
        assert p["git"]["dirty"] is False
    assert p["devices"]["count"] >= 1 and p["devices"]["backend"] == "cpu"
    assert p["versions"]["jax"] == metadata.version("jax")
    assert rundir.read_metrics(run_dir).data["status"] == "completed"


def _copy(run_dir: Path, name: str, edit=None) -> Path:
    dst = run_dir.parent / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(run_dir, dst)
    if edit is not None:
        p = json.loads((dst / rundir.PROVENANCE).read_text())
        edit(p)
        rundir.write_json(dst / rundir.PROVENANCE, p)
    return dst


def test_compare_diff_shows_only_the_provenance_that_differs(real_run):
    run_dir, _ = real_run

    def edit(p):
        p["versions"]["jax"] = "0.4.1"
        p["devices"]["count"] = 8
        p["git"] = {"commit": "f" * 40, "dirty": True}

    b = _copy(run_dir, "b", edit)
    code, out, err = run_main(["compare", str(run_dir), str(b), "--diff", "--format", "json"])
    assert code == 0, err
    rows = {(r["kind"], r["key"]): (r["a"], r["b"]) for r in json.loads(out)}
    a_prov = json.loads((run_dir / rundir.PROVENANCE).read_text())
    want = {
        ("provenance", "versions.jax"): (metadata.version("jax"), "0.4.1"),
        ("provenance", "devices.count"): (a_prov["devices"]["count"], 8),
        ("provenance", "git.commit"): (a_prov["git"] and a_prov["git"]["commit"], "f" * 40),
    }
    for k, v in want.items():
        assert rows[k] == v, k
    # the same config, metrics and time (a copy): nothing else differs but the other git keys
    assert {k for k in rows if k[1].startswith("git.")} | set(want) == set(rows)
    # the table, plain when piped: commits shortened to 12 digits
    code, out, err = run_main(["compare", "--diff", str(run_dir), str(b)])
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[:2] == [f"a: {run_dir}", f"b: {b}"]
    jax_line = next(line for line in lines if "versions.jax" in line).split()
    assert jax_line == ["provenance", "versions.jax", metadata.version("jax"), "0.4.1"]
    assert "f" * 12 in out and "f" * 13 not in out and "\x1b[" not in out


def test_compare_diff_missing_and_damaged_provenance(real_run):
    run_dir, _ = real_run
    none = _copy(run_dir, "none")
    (none / rundir.PROVENANCE).unlink()
    bad = _copy(run_dir, "bad")
    (bad / rundir.PROVENANCE).write_text('{"time": ')
    same = _copy(run_dir, "same")
    code, out, err = run_main(["compare", "--diff", str(run_dir), str(none), str(bad), str(same)])
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.split()[:2] == ["provenance", "versions.jax"])
    assert line.split()[2:] == [metadata.version("jax"), "—", "—", metadata.version("jax")]
    assert err.splitlines() == [
        f"runner: warning: {bad}: provenance.json: not valid JSON (Expecting value: line 1 "
        "column 10; truncated?)"
    ]
    code, out, err = run_main(["compare", "--diff", str(run_dir), str(same)])
    assert code == 0 and out.endswith("same config and metrics; provenance: same\n")


def test_compare_diff_exit_codes(real_run, tmp_path):
    run_dir, _ = real_run
    code, _, err = run_main(["compare", "--diff", str(run_dir)])
    assert code == 2 and err.startswith("runner: error: --diff: name two or more runs")
    code, _, err = run_main(["compare", str(run_dir), "--diff"])
    assert code == 1 and "--diff: 1 run under" in err
    many = tmp_path / "many"
    for i in range(27):
        (many / str(i) / ".hydra").mkdir(parents=True)
    code, _, err = run_main(["compare", str(many), "--diff"])
    assert code == 2 and err == "runner: error: --diff: 27 runs, at most 26 fit side by side " + (
        "(name them, or narrow with --where)\n"
    )
    code, out, err = run_main(["compare", str(many), "--diff", "--where", "id~'^1[0-2]$'"])
    assert code == 0, err
    assert out.splitlines()[:3] == [f"{c}: {many / str(i)}" for c, i in zip("abc", (10, 11, 12))]
