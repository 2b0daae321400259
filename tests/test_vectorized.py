"""Vectorised trials: runner.vectorized trains runs of one structure as one vmapped program, and
hydra/launcher=vmap (hydra_plugins/runner_launcher) uses it for the batches a sweeper launches.

The core promise: every member ends exactly where the same config trained alone ends (same
seed, same numbers within float tolerance), including members that diverge or stop early
while the others go on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import compose

from runner.plots import wait_for_plots

# momentum, not Adam: with batch norm, the Dense bias before it has a zero gradient, and Adam
# scales the float noise of a zero gradient up to full lr-sized steps: any change of summation
# order (vmap's, another machine's) then moves those biases apart. SGD keeps noise as noise.
BASE = [
    "data.max_samples=200",
    "model.width=16",
    "trainer.batch_size=32",
    "trainer.epochs=5",
    "trainer.progress=false",
    "trainer.plot=false",
    "optimizer=momentum",
    "regularization.dropout=0.2",
    "regularization.batchnorm=true",
]
MEMBERS = [
    ["optimizer.lr=0.01", "seed=0"],
    [
        "optimizer.lr=0.1",
        "seed=1",
        "regularization.weight_decay=0.001",
        "regularization.dropout=0.3",
    ],
    ["optimizer.lr=1000", "seed=2"],  # diverges in its first epoch
    # stops at epoch 2: no epoch can improve by 10
    [
        "optimizer.lr=0.03",
        "seed=3",
        "regularization.early_stopping=true",
        "regularization.patience=0",
        "regularization.min_delta=10",
    ],
]


def _cfg(overrides):
    from runner.config import validate

    return validate(compose(BASE + list(overrides)))


@pytest.fixture(scope="module")
def runs():
    """(configs, results of fit_group, results of app.run alone) for MEMBERS."""
    from runner import app, vectorized
    from runner.data import load_dataset

    cfgs = [_cfg(m) for m in MEMBERS]
    ds = load_dataset(cfgs[0].data)
    seen = []
    group = vectorized.fit_group(
        cfgs, ds, on_epoch=lambda ep, n_active, rows: seen.append((ep, n_active))
    )
    alone = [app.run(c, ds) for c in cfgs]
    return cfgs, group, alone, seen


def test_every_member_ends_where_its_run_alone_ends(runs):
    _, group, alone, _ = runs
    for i, (g, a) in enumerate(zip(group, alone)):
        gm, am = g.metrics, a.metrics
        for key in (
            "status",
            "epochs_run",
            "best_epoch",
            "iterations",
            "diverged_reason",
            "stopped_early",
            "n_params",
        ):
            assert gm.get(key) == am.get(key), (i, key, gm.get(key), am.get(key))
        # A diverged member's last epoch evaluates garbage weights (lr=1000: validation loss
        # ~1.8e33, the product of huge activations): its last bits differ with any change of
        # summation order (jax 0.10.2 vs 0.10.1 moved it by 2.5e-5 relative), so that one
        # number is only checked for being astronomically far off, as the run alone says. The
        # training loss that decided the divergence is compared at full tolerance.
        garbage = {"final_val_loss"} if am["status"] == "diverged" else set()
        for key in garbage:
            assert gm[key] > 1e20 and am[key] > 1e20, (i, key)
        # the final weights' test numbers: the same garbage weights when diverged
        garbage |= {"final_test_loss", "final_test_acc"} if am["status"] == "diverged" else set()
        for key in ("test_epoch", "final_test_epoch", "eval_weights"):
            assert gm.get(key) == am.get(key), (i, key, gm.get(key), am.get(key))
        for key in (
            "best_val_loss",
            "best_val_acc",
            "test_loss",
            "test_acc",
            "final_test_loss",
            "final_test_acc",
            "final_train_loss",
            "final_val_loss",
        ):
            if key in garbage:
                continue
            if am.get(key) is None:
                assert gm.get(key) is None, (i, key)
            else:
                assert gm[key] == pytest.approx(am[key], rel=2e-5, abs=1e-6), (i, key)
        assert len(g.history) == len(a.history)
        # diagnostics.csv's rows, the untrained network's epoch 0 included
        assert [(d["epoch"], d["layer"]) for d in g.diagnostics] == [
            (d["epoch"], d["layer"]) for d in a.diagnostics
        ]
        assert g.diagnostics[0]["epoch"] == 0
        for col in ("weight_norm", "act_std", "identical_frac"):
            np.testing.assert_allclose(
                [d[col] for d in g.diagnostics if d["epoch"] == 0],
                [d[col] for d in a.diagnostics if d["epoch"] == 0],
                rtol=1e-5,
                err_msg=f"member {i} epoch-0 {col}",
            )
        for col in ("train_loss", "val_loss", "val_acc", "lr", "grad_norm"):
            n = len(a.history) - (col == "val_loss" and bool(garbage))
            np.testing.assert_allclose(
                [r[col] for r in g.history[:n]],
                [r[col] for r in a.history[:n]],
                rtol=2e-5,
                atol=1e-6,
                err_msg=f"member {i} {col}",
            )
        if a.best_state is None:
            assert g.best_state is None
        else:  # the best epoch's weights, per member (what best_params.npz holds)
            import jax

            for x, y in zip(
                jax.tree_util.tree_leaves(g.best_state.params),
                jax.tree_util.tree_leaves(a.best_state.params),
            ):
                np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)


def test_members_that_stop_are_masked_while_the_others_train_on(runs):
    _, group, _, seen = runs
    assert [g.metrics["status"] for g in group] == [
        "completed",
        "completed",
        "diverged",
        "completed",
    ]
    assert [g.metrics["epochs_run"] for g in group] == [5, 5, 1, 2]
    # the group's active count drops as members diverge (epoch 1), stop early (epoch 2) and
    # finish their epochs (5)
    assert seen == [(1, 3), (2, 2), (3, 2), (4, 2), (5, 0)]
    for i, g in enumerate(group):
        v = g.metrics["vectorized"]
        assert v["members"] == 4 and v["member"] == i
        assert g.metrics["compile_time"] == pytest.approx(v["compile_time"] / 4)
    # Each member's own time: every epoch's time split among the members active in it. The shares
    # add up to the group's time, members active in the same epochs get the same time, and one
    # that stopped early is charged only for its epochs (4 active in epoch 1, 3 in epoch 2, 2 in
    # epochs 3-5).
    v = group[0].metrics["vectorized"]
    own = [g.metrics["train_time"] for g in group]
    assert sum(own) == pytest.approx(v["train_time"], rel=1e-9)
    assert sum(g.metrics["wall_time"] for g in group) == pytest.approx(v["wall_time"], rel=1e-9)
    assert own[0] == pytest.approx(own[1], rel=1e-9)
    assert own[2] < own[3] < own[0]
    times = [[row["time"] for row in g.history] for g in group]
    assert times[0][0] == times[1][0] == times[2][0] == times[3][0]  # epoch 1: a quarter each
    assert times[0][1] == times[3][1]  # epoch 2: a third each for the three still active
    # epochs 3-5 split between the two members still active: the same increments for both
    assert np.diff(times[0])[2:] == pytest.approx(np.diff(times[1])[2:], rel=1e-9)
    # the time outside the epochs (display, bookkeeping) is shared in the same proportions
    scale = [o / t[-1] for o, t in zip(own, times)]
    assert scale == pytest.approx([scale[0]] * 4, rel=1e-9) and scale[0] >= 1


def test_group_key_separates_structures_and_joins_numbers():
    from runner.data import load_dataset
    from runner.vectorized import group_key, plan_groups

    ds = load_dataset(_cfg([]).data)

    def key(*o):
        return group_key(_cfg(o), ds)

    same = key("optimizer.lr=0.01", "seed=0")
    # numbers the core traces: learning rate, seed, weight decay, dropout rate, momentum
    assert (
        key(
            "optimizer.lr=0.3",
            "seed=7",
            "regularization.weight_decay=0.01",
            "regularization.dropout=0.5",
            "optimizer.momentum=0.5",
        )
        == same
    )
    # structure: widths, activation, optimizer family, schedule family, batch size, epochs
    for other in (
        ["model.width=8"],
        ["activation=tanh"],
        ["optimizer=adam"],
        ["schedule=cosine"],
        ["trainer.batch_size=16"],
        ["trainer.epochs=6"],
        ["data.max_samples=150"],
    ):
        assert key(*other) != same, other
    # k-fold runs train their folds one by one; seeds outside int32 cannot be vmapped keys
    assert key("trainer.cv_folds=2") is None and key("seed=4294967296") is None
    assert plan_groups(["a", None, "b", "a", None, "b", "a"]) == [[0, 3, 6], [1], [2, 5], [4]]


# ---------------------------------------------------------------------------------------------
# hydra/launcher=vmap end to end

RUNNER = [sys.executable, "-m", "runner"]
QUICK = ["data=iris", "trainer.epochs=3", "trainer.progress=false", "optimizer=sgd"]


def _load(path):
    return json.loads(path.read_text())


def test_vmap_launcher_sweep_writes_every_job_as_if_it_ran_alone(tmp_path):
    d = tmp_path / "sweep"
    p = subprocess.run(
        RUNNER
        + [
            "-m",
            "hydra/launcher=vmap",
            *QUICK,
            "optimizer.lr=-1,0.05,1e6",
            "model.width=8,16",
            "hydra.sweeper.plot=false",  # topk.png/search.png: not looked at here
            f"hydra.sweep.dir={d}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr
    rows = _load(d / "summary.json")["trials"]
    # Hydra's grid order: lr varies slowest
    assert [r["status"] for r in rows] == [
        "failed",
        "failed",
        "completed",
        "completed",
        "diverged",
        "diverged",
    ]
    assert rows[0]["error"].startswith("optimizer.lr=-1.0: out of range")
    assert _load(d / "0" / "metrics.json")["status"] == "failed"
    for job in range(2, 6):  # two groups (width 8: jobs 2, 4; width 16: jobs 3, 5)
        run = d / str(job)
        m = _load(run / "metrics.json")
        assert m["vectorized"]["members"] == 2
        assert m["vectorized"]["member"] == (0 if job < 4 else 1)
        for f in ("curves.csv", "diagnostics.csv", ".hydra/config.yaml", ".hydra/overrides.yaml"):
            assert (run / f).is_file(), f
        assert not (run / "curves.png").exists()  # trainer.plot=auto: no PNG per sweep trial
        assert len((run / "curves.csv").read_text().splitlines()) == 1 + m["epochs_run"]
    assert (d / "best.yaml").is_file()

    # the same job alone, with the basic launcher's single run: the same numbers
    alone = tmp_path / "alone"
    q = subprocess.run(
        RUNNER + [*QUICK, "optimizer.lr=0.05", "model.width=16", f"hydra.run.dir={alone}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert q.returncode == 0, q.stderr
    a, v = _load(alone / "metrics.json"), _load(d / "3" / "metrics.json")
    assert v["best_epoch"] == a["best_epoch"] and v["epochs_run"] == a["epochs_run"]
    for key in ("best_val_loss", "best_val_acc", "test_loss", "test_acc", "final_train_loss"):
        assert v[key] == pytest.approx(a[key], rel=2e-5, abs=1e-6), key
    assert wait_for_plots(alone, timeout=120) is None  # drawn after the prompt came back
    assert (alone / "curves.png").is_file()  # a single run still draws its plot
    # job 3's config was derived from job 0's (runner.sweep.compose.Composer), not composed from
    # the YAML files: it is the config Hydra composes for those overrides
    assert (d / "3" / ".hydra" / "config.yaml").read_text() == (
        alone / ".hydra" / "config.yaml"
    ).read_text()
    import yaml

    hy = yaml.safe_load((d / "3" / ".hydra" / "hydra.yaml").read_text())["hydra"]
    task = yaml.safe_load((d / "3" / ".hydra" / "overrides.yaml").read_text())
    assert hy["overrides"]["task"] == task
    assert sorted(task) == sorted(QUICK + ["optimizer.lr=0.05", "model.width=16"])
    assert hy["job"]["override_dirname"] == ",".join(sorted(task))
    assert hy["job"]["num"] == 3 and hy["runtime"]["output_dir"] == str(d / "3")


def test_vmap_launcher_takes_random_search_batches_of_n_jobs(tmp_path):
    d = tmp_path / "sweep"
    p = subprocess.run(
        RUNNER
        + [
            "-m",
            "hydra/launcher=vmap",
            "hydra/sweeper=random",
            *QUICK,
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.n_jobs=2",
            "optimizer.lr=tag(log,interval(1e-3,1e-1))",
            "hydra.sweeper.plot=false",  # topk.png/search.png: not looked at here
            f"hydra.sweep.dir={d}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr
    s = _load(d / "summary.json")
    assert s["counts"]["completed"] == 4
    lrs = [r["params"]["optimizer.lr"] for r in s["trials"]]
    assert len(set(lrs)) == 4 and all(1e-3 <= lr <= 1e-1 for lr in lrs)
    members = [_load(d / str(j) / "metrics.json")["vectorized"] for j in range(4)]
    assert [m["members"] for m in members] == [2, 2, 2, 2]  # n_jobs=2: two launches of two
    assert [m["member"] for m in members] == [0, 1, 0, 1]


def _hydra_master(overrides=("hydra.sweep.dir=/tmp/s",)):
    """(Hydra's config loader over runner's conf/, the multirun master config it composes)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.types import RunMode

    from runner.help import conf_dir

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(conf_dir())))
    master = loader.load_configuration(
        config_name="config", overrides=list(overrides), run_mode=RunMode.MULTIRUN
    )
    return loader, master


def _composer(loader, master):
    import types

    from runner.sweep.compose import Composer

    return Composer(
        types.SimpleNamespace(
            config=master, hydra_context=types.SimpleNamespace(config_loader=loader)
        )
    )


def test_composer_derives_hydras_own_configs():
    """runner.sweep.compose.Composer: jobs that differ only in plain values are copies of one
    composed template with the values set; the result equals Hydra's full composition."""
    import types

    from omegaconf import OmegaConf

    from runner.sweep.compose import task_config

    loader, master = _hydra_master()
    composer = _composer(loader, master)
    jobs = [
        ["optimizer=sgd", "optimizer.lr=0.1", "seed=0"],  # composes optimizer=sgd alone
        ["optimizer=sgd", "optimizer.lr=0.2", "seed=1"],  # derived from it
        ["optimizer=adam", "optimizer.lr=0.2", "seed=1"],  # another group: composed
        ["optimizer=sgd", "seed=2", "optimizer.lr=0.3"],  # another order: derived
        ["optimizer=sgd", "seed=4"],  # fewer keys: lr is sgd's own, not a job's before
        ["optimizer=sgd", "seed=5", "trainer.stop_at=1", "trainer.resume=true"],  # more keys
        ["optimizer=sgd", "seed=6", "seed=7"],  # the last value wins, as in Hydra
        ["optimizer=sgd", "+extra=1", "seed=8"],  # adds a key: a template of its own
        ["optimizer=sgd", "+extra=1", "seed=9"],  # derived from that one
        # the same keys as a job before: from that job's configs, only what differs set
        ["optimizer=sgd", "optimizer.lr=0.4", "seed=1"],  # one key differs
        ["optimizer=sgd", "seed=7", "seed=6"],  # its repeated key, last value another
        ["optimizer=sgd", "seed=5", "seed=7"],  # an unseen line that is not the last: all set
        ["optimizer=sgd", "seed=6", "optimizer.lr=0.5", "seed=7", "optimizer.lr=0.1"],
        ["optimizer=sgd", "optimizer.lr=0.1", "seed=0"],  # the first job's values again
    ]
    for job in jobs:
        (got, task), full = composer.compose_job(job), loader.load_sweep_config(master, job)
        assert OmegaConf.to_container(got) == OmegaConf.to_container(full), job
        # the same kind of config: struct, a HydraConf node (set_config asserts it)
        assert OmegaConf.is_struct(got) and OmegaConf.is_struct(full)
        assert OmegaConf.get_type(got, "hydra") is OmegaConf.get_type(full, "hydra")
        # the task config, derived from the template's: what run_job hands the task
        want = task_config(full)
        assert OmegaConf.to_container(task) == OmegaConf.to_container(want), job
        assert OmegaConf.is_struct(task) and "hydra" not in task
    assert (
        composer.compose(jobs[4]).optimizer.lr
        == loader.load_sweep_config(master, ["optimizer=sgd"]).optimizer.lr
        != 0.3
    )
    assert len(composer.templates) == 3
    # (template, keys of the values) -> the first job of them with its values set
    assert len(composer.with_values) == 5
    sgd = ("without values", "optimizer=sgd")
    values = composer._parse(["optimizer.lr=0.3", "seed=0"])
    last = {o.key_or_group: o.input_line for o in values}
    kept = composer.with_values[(sgd, frozenset(last))]
    # kept with the first job's own lines of overrides: a later job's list is as long, so it
    # sets only the elements that differ (_set_lines), not a whole new list
    import pickle

    more = composer.with_values[(sgd, frozenset({"seed", "trainer.stop_at", "trainer.resume"}))]
    assert list(pickle.loads(more[0][0]).hydra.overrides.task) == jobs[5]
    start, todo = composer._start(kept, composer.templates[sgd], values, last)
    assert start is kept[0]
    assert [o.input_line for o in todo] == ["optimizer.lr=0.3"]  # seed=0 is the first job's
    # keys inside another key (a=..., a.b=...): not kept, every job sets all its values
    fake = types.SimpleNamespace
    values = [
        fake(key_or_group="a", input_line="a={b: 1}"),
        fake(key_or_group="a.b", input_line="a.b=2"),
    ]
    key = ("sig", frozenset({"a", "a.b"}))
    composer._keep_values(key, values, {"a": "a={b: 1}", "a.b": "a.b=2"}, master, master)
    assert key not in composer.with_values
    # a key Hydra refuses: Hydra's own error
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="optimizer.lrr"):
        composer.compose(["optimizer=sgd", "optimizer.lrr=0.5", "seed=3"])


def test_a_sweeps_check_of_its_first_trial_composes_the_template_its_launches_use():
    """The sweep composes its first trial before anything trains (a typo fails in one line);
    with the vmap launcher it does so through the launcher's Composer (compose.composer_of),
    so the launches derive their jobs from that template instead of composing it again."""
    import types

    from hydra.errors import ConfigCompositionException

    from hydra_plugins.runner_launcher.vmap_launcher import VmapLauncher
    from runner.sweep.compose import composer_of
    from runner.sweep.run import Sweep

    loader, master = _hydra_master()
    context = types.SimpleNamespace(config_loader=loader, callbacks=None)
    launcher = VmapLauncher()
    launcher.setup(hydra_context=context, task_function=None, config=master)
    sweep = Sweep.__new__(Sweep)
    sweep.launcher, sweep.config, sweep.hydra_context = launcher, master, context
    calls = []
    full = loader.load_sweep_config
    loader.load_sweep_config = lambda *a, **k: calls.append(a[1]) or full(*a, **k)
    sweep._compose_trial(["optimizer=sgd", "optimizer.lr=0.1", "seed=0"])
    composer = composer_of(launcher)
    # without its values, with the sweep folder Sweep._run_batch adds to each launched job
    folder = "hydra.sweep.dir=/tmp/s"
    assert calls == [["optimizer=sgd", folder]] and len(composer.templates) == 1
    assert composer_of(launcher) is composer  # what launch() uses
    sc, _ = composer.compose_job(["optimizer=sgd", "optimizer.lr=0.2", "seed=1", folder])
    assert len(calls) == 1 and sc.optimizer.lr == 0.2  # derived: no composition
    with pytest.raises(ConfigCompositionException, match="optimizer.lrr"):
        sweep._compose_trial(["optimizer=sgd", "optimizer.lrr=0.5"])
    # another launcher (basic, or a config of its own): Hydra composes the trial itself
    sweep.launcher = types.SimpleNamespace(config=master)
    sweep._compose_trial(["optimizer=adam", "seed=2"])
    assert calls[-1] == ["optimizer=adam", "seed=2"]


@pytest.mark.parametrize(
    "overrides",
    [
        ["hydra.sweep.dir=/tmp/s"],  # runner's subdir, ${hydra.job.num}: read as it is
        ["hydra.sweep.dir=/tmp/s/${seed}"],  # an interpolated folder: resolved
        ["hydra.sweep.dir=/tmp/s", "hydra.sweep.subdir=run_${hydra.job.num}"],
    ],
)
def test_a_jobs_folder_is_the_one_hydra_resolves(overrides):
    from omegaconf import open_dict

    from runner.sweep.launcher import _job_dir

    loader, master = _hydra_master(overrides)
    sc = loader.load_sweep_config(master, ["seed=3"])
    with open_dict(sc):
        sc.hydra.job.num = 7
    want = Path(str(sc.hydra.sweep.dir)) / str(sc.hydra.sweep.subdir)
    assert _job_dir(sc) == want and str(want).startswith("/tmp/s") and "7" in want.name


def test_hydra_yaml_of_a_templates_jobs_is_byte_for_byte_dump_yaml():
    """fastyaml.TemplateYaml (the Composer's hydra_yaml): a job's hydra.yaml from its template's
    YAML nodes with its own values at the job-specific paths is byte for byte dump_yaml of its
    hydra node, for jobs of several templates, in any order; a node whose keys differ from its
    template's at those paths falls back to dump_yaml."""
    from omegaconf import open_dict, read_write

    from runner.fastyaml import dump_yaml
    from runner.sweep.launcher import _hydra_view

    composer = _composer(*_hydra_master())
    long = "x" * 90  # folded by the emitter: the same folds at the same depth
    jobs = [
        ["optimizer=sgd", "optimizer.lr=0.1", "seed=0"],
        ["optimizer=sgd", "seed=11", "optimizer.lr=0.2", "trainer.stop_at=3"],
        ["optimizer=adam", "optimizer.lr=0.3", f"paths.outputs=/tmp/{long}"],
        ["optimizer=sgd", "+extra=1", "seed=8"],
        ["optimizer=sgd", "optimizer.lr=0.4"],
        ["optimizer=adam", "seed=5"],
        ["optimizer=sgd", "+extra=1", "seed=9"],
    ]
    seen = set()
    for num, job in enumerate(jobs * 2):
        sc, _ = composer.compose_job(job)
        template = composer.last_template
        assert template is not None
        seen.add(template)
        with open_dict(sc):
            sc.hydra.job.id = num * 1000
            sc.hydra.job.num = num * 1000
        with read_write(sc.hydra.runtime), open_dict(sc.hydra.runtime):
            sc.hydra.runtime.output_dir = f"/tmp/s/{long}/{num * 1000}"
        view = _hydra_view(sc)
        assert composer.hydra_yaml.dump(view, template=template) == dump_yaml(view), job
    assert len(seen) == 3 and len(composer.hydra_yaml._nodes) == 3
    # other keys than the template's where a value varies: dump_yaml's text, not the nodes'
    from omegaconf import OmegaConf

    from runner.fastyaml import TemplateYaml

    ty = TemplateYaml((("a", "b"),))
    first = OmegaConf.create({"a": {"b": 1, "c": [1, 2]}, "z": "same"})
    assert ty.dump(first, template="t") == dump_yaml(first)
    for doc in ({"a": {"b": [3, 4], "c": [1, 2]}, "z": "same"}, {"a": {"b": 2}, "z": "same"}):
        other = OmegaConf.create(doc)
        assert ty.dump(other, template="t") == dump_yaml(other), doc


def test_a_task_config_as_plain_data_validates_and_writes_as_the_config_does():
    """compose.as_plain: one conversion of a job's task config serves runner.config.validate and
    config.yaml (the same Config, the same bytes as OmegaConf.to_yaml), where its only
    interpolations are whole ${oc.env:...} paths; anything else: None (the config itself)."""
    from omegaconf import OmegaConf, open_dict

    from runner.config import validate
    from runner.fastyaml import dump_container
    from runner.sweep.compose import as_plain

    tc = compose(["data=iris", "optimizer=sgd", "optimizer.lr=0.05", "seed=3"])
    assert "${oc.env:" in OmegaConf.to_container(tc, resolve=False)["paths"]["cache"]
    plain = as_plain(tc)
    assert plain is not None
    assert dump_container(plain) == OmegaConf.to_yaml(tc)
    assert validate(plain) == validate(tc)
    for key, value in (("trainer.epochs", "${seed}"), ("paths.cache", "${paths.outputs}/c")):
        other = tc.copy()
        with open_dict(other):
            OmegaConf.update(other, key, value)
        assert as_plain(other) is None, key


def test_adam_members_without_batch_norm_equal_their_runs_alone():
    """The default optimizer, three members over two devices (one padded slot)."""
    from runner import app, vectorized
    from runner.config import validate
    from runner.data import load_dataset

    base = [
        "data=iris",
        "model.width=16",
        "trainer.epochs=4",
        "trainer.progress=false",
        "trainer.plot=false",
        "optimizer=adam",
    ]
    cfgs = [
        validate(compose(base + o))
        for o in (
            ["optimizer.lr=0.01", "seed=0"],
            ["optimizer.lr=0.003", "seed=5"],
            ["optimizer.lr=0.03", "seed=9", "regularization.weight_decay=0.01"],
        )
    ]
    ds = load_dataset(cfgs[0].data)
    for g, c in zip(vectorized.fit_group(cfgs, ds), cfgs):
        a = app.run(c, ds)
        assert g.metrics["best_epoch"] == a.metrics["best_epoch"]
        for key in ("best_val_loss", "test_loss", "final_train_loss"):
            assert g.metrics[key] == pytest.approx(a.metrics[key], rel=2e-5), key
        np.testing.assert_allclose(
            [r["val_loss"] for r in g.history], [r["val_loss"] for r in a.history], rtol=2e-5
        )


def test_a_shorter_group_padded_to_a_longer_ones_size_reuses_its_program():
    """The launcher pads groups of one structure to one size (launcher._chunks makes them
    nearly equal): no new compile, and members get the numbers they got in the longer group."""
    from runner import vectorized
    from runner.config import validate
    from runner.core import train
    from runner.data import load_dataset

    base = [
        "data=iris",
        "model.width=16",
        "trainer.epochs=3",
        "trainer.progress=false",
        "trainer.plot=false",
    ]
    cfgs = [
        validate(compose(base + [f"optimizer.lr={lr}", f"seed={s}"]))
        for lr, s in ((0.01, 0), (0.003, 5), (0.03, 9))
    ]
    ds = load_dataset(cfgs[0].data)
    three = vectorized.fit_group(cfgs, ds)
    compiles = train.PROGRAMS.stats.compiles
    two = vectorized.fit_group(cfgs[:2], ds, pad_to=3)
    assert train.PROGRAMS.stats.compiles == compiles
    for g, t in zip(two, three):
        assert g.metrics["vectorized"]["members"] == 2
        assert [r["val_loss"] for r in g.history] == [r["val_loss"] for r in t.history]
        assert g.metrics["test_loss"] == t.metrics["test_loss"]


def test_chunks_are_as_equal_as_can_be():
    from runner.sweep.launcher import _chunks

    sizes = lambda n, size: [len(c) for c in _chunks(list(range(n)), size)]
    assert sizes(10, 8) == [5, 5]
    assert sizes(64, 8) == [8] * 8
    assert sizes(17, 8) == [6, 6, 5]
    assert sizes(3, 64) == [3]
    assert sizes(1, 1) == [1]
    assert sum(_chunks(list(range(17)), 8), []) == list(range(17))


def test_cpu_groups_hold_a_bounded_amount_of_training_state():
    """state_bytes is parameters plus Adam's two moments (and its step count); on the CPU
    devices of the suite (2, conftest) a group carries CPU_STATE_BYTES of it per device."""
    import jax

    from runner import vectorized
    from runner.config import validate
    from runner.data import load_dataset

    assert len(jax.local_devices()) == 2
    small = validate(compose(["data.max_samples=120", "model.width=16"]))
    wide = validate(compose(["data.max_samples=120", "model.width=512"]))
    ds = load_dataset(small.data)
    f, c = int(np.prod(ds.x_train.shape[1:])), 10  # 8x8 digits
    for cfg, w in ((small, 16), (wide, 512)):
        params = f * w + w + w * w + w + w * c + c
        assert 12 * params <= vectorized.state_bytes(cfg, ds) <= 12 * params + 64
    wide_bytes = vectorized.state_bytes(wide, ds)  # ~3.6 MB: one member per device
    assert vectorized.CPU_STATE_BYTES // wide_bytes == 1
    assert vectorized.group_size(wide, ds, 64) == 2
    assert vectorized.group_size(small, ds, 64) == 64  # ~17 KB a member: max_members decides
    assert vectorized.group_size(small, ds, 5) == 5
    per_device = vectorized.CPU_STATE_BYTES // vectorized.state_bytes(small, ds)
    assert vectorized.group_size(small, ds, 10**6) == 2 * per_device


def test_write_job_does_what_hydras_run_job_does(tmp_path):
    """runner.sweep.launcher._write_job, which stands in for Hydra's run_job for a job its group
    trained: the same files (hydra.yaml the same document), HydraConfig during the task and
    JobReturn, for the same job and Result."""
    import functools
    import types

    import yaml
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import run_job, setup_globals
    from hydra.types import HydraContext, RunMode
    from omegaconf import OmegaConf, open_dict

    from runner import app, task
    from runner.config import validate
    from runner.data import load_dataset
    from runner.datasets import cache_in
    from runner.help import conf_dir
    from runner.sweep import launcher as L
    from runner.sweep.compose import task_config

    setup_globals()
    before = HydraConfig.instance().cfg
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(conf_dir())))
    master = loader.load_configuration(
        config_name="config", overrides=[f"hydra.sweep.dir={tmp_path}"], run_mode=RunMode.MULTIRUN
    )
    context = HydraContext(config_loader=loader, callbacks=Callbacks())
    job = ["debug=tiny", "optimizer.lr=0.05", "seed=3"]
    configs = [loader.load_sweep_config(master, job) for _ in range(2)]
    for num, sc in enumerate(configs):
        with open_dict(sc):
            sc.hydra.job.num = sc.hydra.job.id = num
            sc.hydra.mode = RunMode.MULTIRUN  # as Hydra's multirun sets it
    task_cfgs = [task_config(sc) for sc in configs]
    cfg = validate(task_cfgs[0])
    with cache_in(cfg.paths):
        result = app.run(cfg, load_dataset(cfg.data))
    seen, orig = [], task.task

    def spy(dcfg, **kw):  # what the task sees of HydraConfig
        hc = HydraConfig.get()
        seen.append((hc.runtime.output_dir, hc.job.num, hc.mode, OmegaConf.is_struct(dcfg)))
        return orig(dcfg, **kw)

    ran = run_job(
        task_function=functools.partial(spy, result=result),
        config=configs[0],
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
        hydra_context=context,
    )
    assert L._lean(configs[1])
    L._open_folders([1], configs, task_cfgs)
    launcher = types.SimpleNamespace(hydra_context=context)
    task.task = spy
    try:
        wrote = L._write_job(launcher, configs[1], task_cfgs[1], cfg, result)
    finally:
        task.task = orig
    a, b = tmp_path / "0", tmp_path / "1"
    assert seen == [(str(a), 0, RunMode.MULTIRUN, True), (str(b), 1, RunMode.MULTIRUN, True)]
    files = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
    assert files == sorted(str(p.relative_to(b)) for p in b.rglob("*"))
    for name in ("config.yaml", "overrides.yaml"):
        assert (a / ".hydra" / name).read_text() == (b / ".hydra" / name).read_text()
    for d in (a, b):  # this job's own values, then the two documents are equal
        text = (d / ".hydra" / "hydra.yaml").read_text().replace(str(d), "DIR")
        text = text.replace(f"num: {d.name}", "num: N").replace(f"id: '{d.name}'", "id: N")
        assert yaml.safe_load(text) == yaml.safe_load(
            OmegaConf.to_yaml(ran.hydra_cfg)
            .replace(str(a), "DIR")
            .replace("num: 0", "num: N")
            .replace("id: '0'", "id: N")
        )
    assert _load(a / "metrics.json") == _load(b / "metrics.json")
    assert (wrote.status, wrote.return_value, wrote.task_name, wrote.working_dir) == (
        ran.status,
        ran.return_value,
        ran.task_name,
        ran.working_dir,
    )
    assert wrote.overrides == ran.overrides == job
    assert OmegaConf.to_container(wrote.cfg) == OmegaConf.to_container(ran.cfg)
    assert OmegaConf.is_struct(wrote.cfg) and OmegaConf.is_struct(ran.cfg)
    assert wrote.hydra_cfg.hydra.runtime.output_dir == str(b)
    # set_config's shape without its copy: the hydra node alone, read-only, resolving through
    # the job's config; sc's own node (nothing copied)
    assert list(wrote.hydra_cfg) == list(ran.hydra_cfg) == ["hydra"]
    assert OmegaConf.is_readonly(wrote.hydra_cfg.hydra) and OmegaConf.is_readonly(
        ran.hydra_cfg.hydra
    )
    assert wrote.hydra_cfg._get_node("hydra") is configs[1]._get_node("hydra")
    assert wrote.hydra_cfg.hydra._get_parent() is configs[1]
    assert wrote.hydra_cfg.hydra.sweep.subdir == "1"  # an interpolation of hydra.job.num
    assert HydraConfig.instance().cfg is before  # restored, as run_job restores it


def _launch(tmp_path, monkeypatch, jobs, events):
    """runner.sweep.launcher.launch in-process over `jobs` (override lists) in groups of 2,
    with its groups' training, first epochs and job writes appended to `events`."""
    import types

    from hydra._internal.callbacks import Callbacks
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import HydraContext

    from runner import task
    from runner.sweep import launcher as L

    loader, master = _hydra_master([f"hydra.sweep.dir={tmp_path}"])
    train, write = L._train_group, L._write_job

    def train_group(group, *args):
        *rest, on_dispatch = args
        events.append(("train", group[0]))

        def dispatched():
            events.append(("first epoch", group[0]))
            on_dispatch()

        out = train(group, *rest, dispatched)
        events.append(("trained", group[0]))
        return out

    def write_job(launcher, sc, *args):
        events.append(("write", int(sc.hydra.job.num)))
        return write(launcher, sc, *args)

    monkeypatch.setattr(L, "_train_group", train_group)
    monkeypatch.setattr(L, "_write_job", write_job)
    launcher = types.SimpleNamespace(
        config=master,
        hydra_context=HydraContext(config_loader=loader, callbacks=Callbacks()),
        task_function=task.task,
        max_members=2,
    )
    before = HydraConfig.instance().cfg
    try:
        return L.launch(launcher, jobs, 0)
    finally:
        HydraConfig.instance().cfg = before


def test_a_groups_folders_are_written_while_the_next_group_trains(tmp_path, monkeypatch):
    """The vmap launcher writes a trained group's folders once the next group's first epoch is
    computing (fit_group's on_dispatch), the last group's after it; every job ends written,
    in job order; the time spent writing is no member's training time."""
    jobs = [["debug=tiny", f"optimizer.lr={lr}"] for lr in (0.01, 0.02, 0.03, 0.04)]
    events: list = []
    returns = _launch(tmp_path, monkeypatch, jobs, events)
    assert events == [
        ("train", [0, 1]),
        ("first epoch", [0, 1]),
        ("trained", [0, 1]),
        ("train", [2, 3]),
        ("first epoch", [2, 3]),
        ("write", 0),
        ("write", 1),
        ("trained", [2, 3]),
        ("write", 2),
        ("write", 3),
    ]
    assert [r.status.name for r in returns] == ["COMPLETED"] * 4
    for job in range(4):
        m = _load(tmp_path / str(job) / "metrics.json")
        assert m["status"] == "completed" and m["vectorized"]["members"] == 2
        v = m["vectorized"]
        assert m["train_time"] <= v["train_time"] <= v["wall_time"]


def test_an_error_writing_a_group_is_raised_by_the_launch_not_taken_for_the_next_group(
    tmp_path, monkeypatch, caplog
):
    """Writing job 0's folder fails (a full disk) during the next group's first epoch: the
    launch raises that error once the group in flight is done, and that group is not reported
    as one that could not be vectorised."""
    from runner.sweep import launcher as L

    write = L._write_job

    def full_disk(launcher, sc, *args):
        if int(sc.hydra.job.num) == 0:
            raise OSError(28, "No space left on device", str(tmp_path / "0" / "hydra.yaml"))
        return write(launcher, sc, *args)

    monkeypatch.setattr(L, "_write_job", full_disk)
    jobs = [["debug=tiny", f"optimizer.lr={lr}"] for lr in (0.01, 0.02, 0.03, 0.04)]
    events: list = []
    with pytest.raises(OSError, match="No space left"):
        _launch(tmp_path, monkeypatch, jobs, events)
    assert events[-1] == ("trained", [2, 3])  # raised after the group in flight, not inside it
    assert ("write", 1) not in events  # nothing more written once one write failed
    assert "not vectorised" not in caplog.text


def test_fit_group_leaves_the_time_lent_to_on_dispatch_out_of_its_times(monkeypatch):
    """on_dispatch's time (the launcher writing another group's folders) is no member's: with
    a clock that jumps 1000 s inside on_dispatch, the group's train and wall times stay small."""
    import time

    from runner import vectorized
    from runner.data import load_dataset

    ds = load_dataset(_cfg([]).data)
    jump = [0.0]
    real = time.perf_counter
    monkeypatch.setattr(vectorized.time, "perf_counter", lambda: real() + jump[0])

    def on_dispatch():
        jump[0] += 1000.0

    calls = []
    out = vectorized.fit_group(
        [_cfg([]), _cfg(["seed=1"])],
        ds,
        on_dispatch=lambda: calls.append(1) or on_dispatch(),
        pad_to=4,
    )
    assert calls == [1]  # once, at the first epoch
    v = out[0].metrics["vectorized"]
    assert 0 < v["train_time"] <= v["wall_time"] < 1000
    assert all(0 < r.metrics["train_time"] < 1000 for r in out)
    assert all(0 <= row["time"] < 1000 for r in out for row in r.history)


def test_hyperparameters_of_training_only_change_neither_initial_weights_nor_evaluation():
    """spec.TRAINING_ONLY, the claim runner.vectorized's shared initial evaluation rests on:
    changing every one of those keys leaves a member's evaluation before training as it was;
    changing a key outside it (leaky_relu's slope) does not."""
    import functools

    import jax

    from runner.core import train
    from runner.core.spec import TRAINING_ONLY, make_hparams, make_spec
    from runner.data import load_dataset

    cfg = _cfg(["activation=leaky_relu", "optimizer=adamw", "schedule=cosine", "seed=4"])
    ds = load_dataset(cfg.data)
    spec = make_spec(cfg, ds)
    base = make_hparams(cfg, spec)
    assert set(base) > TRAINING_ONLY
    moved = {k: (v * 1.7 + 0.3 if k in TRAINING_ONLY else v) for k, v in base.items()}
    slope = dict(base, negative_slope=base["negative_slope"] + 0.2)
    hps = {k: np.stack([h[k] for h in (base, moved, slope)]) for k in base}
    seeds = np.full(3, cfg.seed, np.int32)
    data = ds.arrays()
    states = jax.jit(functools.partial(train.init_states, spec))(hps, seeds, data)
    ev = jax.device_get(jax.jit(functools.partial(train.evaluate_members, spec))(states, data, hps))
    for path, v in jax.tree_util.tree_leaves_with_path(ev):  # with the diagnostics' "diag"
        np.testing.assert_array_equal(v[0], v[1], err_msg=jax.tree_util.keystr(path))
    assert ev["train_loss"][2] != ev["train_loss"][0]


def test_groups_of_trials_that_differ_in_training_only_share_one_initial_evaluation():
    """A sweep's groups whose members differ only in how they train (lr, weight decay) start
    from the same weights: the second group takes the first's initial numbers instead of
    evaluating again; another seed, or another dataset object, evaluates."""
    from runner import vectorized
    from runner.data import load_dataset

    def group(lrs, seed=0, ds=None):  # padded as the module's fixture: its programs, compiled
        cfgs = [_cfg([f"optimizer.lr={lr}", f"seed={seed}"]) for lr in lrs]
        return vectorized.fit_group(cfgs, ds or data, pad_to=4)

    calls = []
    numbers = vectorized._initial_numbers

    def counting(ds, keys, evaluate):
        return numbers(ds, keys, lambda: calls.append(len(keys)) or evaluate())

    data = load_dataset(_cfg([]).data)
    vectorized._initial_numbers = counting
    try:
        first = group([0.01, 0.02])
        assert calls == [2]
        second = group([0.05, 0.1])
        assert calls == [2]  # no initial evaluation
        other_seed = group([0.05, 0.1], seed=7)
        assert calls == [2, 2]
        other_ds = group([0.05, 0.1], ds=load_dataset(_cfg([]).data))
        assert calls == [2, 2, 2]
    finally:
        vectorized._initial_numbers = numbers
    for key in ("initial_train_loss", "initial_val_loss"):
        want = first[0].metrics[key]
        assert {r.metrics[key] for r in first + second + other_ds} == {want}
        assert other_seed[0].metrics[key] != want
    # and they are the numbers an evaluation of the group gives
    vectorized._INITIAL.clear()
    again = group([0.05, 0.1])
    assert again[0].metrics["initial_train_loss"] == second[0].metrics["initial_train_loss"]
