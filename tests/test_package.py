"""A real package: the wheel, installed (not editable) into a fresh venv, runs from any folder.

The Hydra configs are package data (runner/conf, shipped by pyproject.toml's package-data globs;
the top-level conf is a link to it). This builds the wheel offline (--no-build-isolation, with
this environment's setuptools: the `test` extra asks for one with bdist_wheel), installs it with
--no-deps into a fresh venv made without pip, and runs the `runner` console script of that venv
from an unrelated temporary folder.

Installing jax & co. from PyPI into the fresh venv would be slow and need the network, so the
venv reuses this environment's packages: a .pth file in its site-packages lists this
interpreter's sys.path directories. A plain directory line does not process that directory's own
.pth files, so an editable install of runner there (setuptools' __editable__ finder) stays
inactive, and the venv's own site-packages (with the wheel's runner) comes first on sys.path;
both are checked below, as is the config folder Hydra actually read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import yaml

from runner.help import conf_dir

ROOT = Path(__file__).resolve().parent.parent
# Not copied into the build tree: VCS, environments, outputs and build leftovers.
SKIP = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "outputs",
    "multirun",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".import_linter_cache",
    ".grimp_cache",
    "*.whl",
)

PROBE = """
import json, sys
import runner, runner.help
print(json.dumps({"runner": runner.__file__, "conf": str(runner.help.conf_dir()),
                  "editable": sorted(m for m in sys.modules if m.startswith("__editable__")),
                  "meta_path": [type(f).__module__ for f in sys.meta_path]}))
"""


def _run(cmd, what, timings, **kw):
    t0 = time.perf_counter()
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    timings[what] = time.perf_counter() - t0
    assert p.returncode == 0, (
        f"{what} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    )
    return p


def test_wheel_runs_from_any_folder(tmp_path):
    timings: dict[str, float] = {}

    # 1. The wheel, built from a copy of the working tree (building in place would write build/
    #    and runner.egg-info into the checkout, shared with other test workers).
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=SKIP)
    dist = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "-w",
            dist,
            src,
        ],
        "build",
        timings,
        timeout=300,
    )
    wheels = list(dist.glob("runner-*.whl"))
    assert len(wheels) == 1, wheels
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    expected = {
        f"runner/conf/{p.relative_to(conf_dir()).as_posix()}" for p in conf_dir().rglob("*.yaml")
    }
    assert "runner/conf/config.yaml" in expected
    missing = sorted(expected - names)
    assert not missing, f"{len(missing)} YAML configs missing from the wheel, e.g. {missing[:3]}"
    assert not any(n.startswith("conf/") for n in names)  # the link is not packaged twice
    assert {
        "hydra_plugins/runner_launcher/__init__.py",
        "hydra_plugins/runner_sweeper/__init__.py",
    } <= names

    # 2. A fresh venv (no pip: this environment's pip installs into it), the wheel without deps.
    fresh = tmp_path / "fresh"
    t0 = time.perf_counter()
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(fresh)
    timings["venv"] = time.perf_counter() - t0
    bindir = fresh / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            wheels[0],
        ],
        "install",
        timings,
        env=env,
        timeout=300,
    )
    # Only now (pip must not see this environment's runner as already installed): reuse our deps.
    site = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            "site",
            timings,
            env=env,
        ).stdout.strip()
    )
    assert (site / "runner" / "conf" / "config.yaml").is_file()
    # (Not the checkout itself, nor the tests folder pytest puts on sys.path.)
    reuse = [
        p
        for p in sys.path
        if p and Path(p).is_dir() and Path(p).resolve() not in (ROOT, ROOT / "tests")
    ]
    (site / "_runner_test_reuse_deps.pth").write_text("\n".join(reuse) + "\n")

    # 3. Run it from an unrelated folder; nothing written to the home folder.
    work = tmp_path / "work"
    work.mkdir()
    env.update(
        RUNNER_CACHE_DIR=str(tmp_path / "cache"),
        RUNNER_JAX_CACHE="off",
        MPLCONFIGDIR=str(tmp_path / "mpl"),
    )
    probe = json.loads(_run([python, "-c", PROBE], "probe", timings, cwd=work, env=env).stdout)
    assert Path(probe["runner"]).parent == site / "runner", probe
    assert Path(probe["conf"]) == site / "runner" / "conf", probe
    assert not probe["editable"] and not any("__editable__" in m for m in probe["meta_path"]), probe
    script = bindir / ("runner.exe" if os.name == "nt" else "runner")
    p = _run(
        [script, "trainer.epochs=1", "trainer.progress=false", "trainer.plot=false"],
        "run",
        timings,
        cwd=work,
        env=env,
        timeout=300,
    )
    runs = list((work / "outputs").glob("*/*/metrics.json"))
    assert len(runs) == 1, (runs, p.stdout[-2000:])
    assert json.loads(runs[0].read_text())["status"] == "completed"
    hydra = yaml.safe_load((runs[0].parent / ".hydra" / "hydra.yaml").read_text())["hydra"]
    main = [s["path"] for s in hydra["runtime"]["config_sources"] if s["provider"] == "main"]
    assert [Path(m) for m in main] == [site / "runner" / "conf"], main  # the wheel's configs
    assert Path(hydra["runtime"]["cwd"]).resolve() == work.resolve()
    print("timings (s):", {k: round(v, 2) for k, v in timings.items()})


def test_pre_commit_pins_the_versions_of_the_test_extra():
    """.pre-commit-config.yaml installs its hooks' tools itself: they must be the versions of the
    test extra, which `make lint` (CI) runs, or the two would judge the same code differently."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = set(project["optional-dependencies"]["test"])
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    pins = {
        dep
        for repo in hooks["repos"]
        for hook in repo["hooks"]
        for dep in hook.get("additional_dependencies", [])
    }
    assert {"ruff", "import-linter"} <= {pin.split("==")[0] for pin in pins}
    assert pins <= extra, f"pre-commit pins {sorted(pins - extra)}; the test extra: {sorted(extra)}"
