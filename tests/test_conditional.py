"""Conditional search spaces (runner.sweep.space.Conditions): a swept key under a config group
whose option is swept too (optimizer=sgd,momentum optimizer.momentum=0.5,0.9) is kept in the
trials whose option has it and left out of the others; trials made equal by that collapse into
one; a key that no swept option has is a one-line error. The expansion is tested directly on
configs composed from conf/, and the sweep's wiring once in-process with a launcher that trains
nothing."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json

import pytest
from conftest import TINY, compose

from runner.shell import GROUPS
from runner.sweep.space import SweepError, conditions, grid, parse_space, rng_for, sample


@functools.cache
def _composed(overrides: tuple):
    return compose(list(overrides))


def composed(overrides: list[str]):
    """compose(), once per list of overrides in this file: composing costs ~0.1 s."""
    return _composed(tuple(overrides))


def expand(args, kind="grid", n=0, seed=0):
    space = parse_space(list(args))
    cond = conditions(space, set(GROUPS), composed)
    planned = grid(space) if kind == "grid" else sample(space, n, rng_for(seed, 1))
    return cond.apply(planned)


def test_the_issues_example_is_three_trials():
    trials, note = expand(["optimizer=sgd,momentum", "optimizer.momentum=0.5,0.9"])
    assert trials == [
        (["optimizer=sgd"], {"optimizer": "sgd"}),
        (
            ["optimizer=momentum", "optimizer.momentum=0.5"],
            {"optimizer": "momentum", "optimizer.momentum": 0.5},
        ),
        (
            ["optimizer=momentum", "optimizer.momentum=0.9"],
            {"optimizer": "momentum", "optimizer.momentum": 0.9},
        ),
    ]
    assert note == (
        "conditional: optimizer.momentum left out where optimizer=sgd: 4 trials collapse into 3"
    )
    # every trial left composes: the keys that stayed are settings of their options
    for overrides, _ in trials:
        composed(TINY + overrides)


def test_vmap_launcher_groups_the_trials_that_share_their_structure():
    from runner.sweep.launcher import _plan

    trials, _ = expand(["optimizer=sgd,momentum", "optimizer.momentum=0.5,0.9"])
    configs = [composed(TINY + overrides) for overrides, _ in trials]
    # the two momentum trials differ only in a number: one vmapped program; sgd trains alone
    assert [idx for idx, *_ in _plan(configs, 64)] == [[1, 2]]


def test_no_conditional_key_changes_nothing():
    args = ["optimizer=sgd,adam", "optimizer.lr=0.1,0.01", "seed=0,1"]
    space = parse_space(args)
    # optimizer.lr depends on the optimizer chosen, and both options have it
    cond = conditions(space, set(GROUPS), composed)
    assert cond.has == {"optimizer.lr": ["sgd", "adam"]}
    trials, note = expand(args)
    assert trials == grid(space) and len(trials) == 8 and note is None


@pytest.mark.parametrize(
    "args, start, rest",
    [
        (  # a typo: no optimizer has it
            ["optimizer=sgd,momentum", "optimizer.nesterovv=0.5,0.9"],
            "optimizer.nesterovv=0.5,0.9: not a setting of any option swept "
            "(optimizer=sgd,momentum): ",
            "optimizer=sgd has lr, name; optimizer=momentum has lr, momentum, name",
        ),
        (  # a real key, but of no option chosen (it belongs to momentum, nesterov, rmsprop)
            ["optimizer=sgd,adam", "optimizer.momentum=interval(0.5,0.99)"],
            "optimizer.momentum=interval(0.5,0.99): not a setting of any option swept "
            "(optimizer=sgd,adam): ",
            "optimizer=sgd has lr, name; optimizer=adam has b1, b2, eps, lr, name",
        ),
    ],
)
def test_a_key_of_no_swept_option_is_a_one_line_error(args, start, rest):
    with pytest.raises(SweepError) as e:
        expand(args)
    assert str(e.value) == start + rest and "\n" not in str(e.value)


def test_grid_across_two_groups_drops_each_key_where_its_option_lacks_it():
    trials, note = expand(
        [
            "model=mlp,cnn",
            "model.kernel_size=3,5",
            "optimizer=sgd,momentum",
            "optimizer.momentum=0.5,0.9",
            "seed=0",
        ]
    )
    models = [
        ["model=mlp"],
        ["model=cnn", "model.kernel_size=3"],
        ["model=cnn", "model.kernel_size=5"],
    ]
    optims = [
        ["optimizer=sgd"],
        ["optimizer=momentum", "optimizer.momentum=0.5"],
        ["optimizer=momentum", "optimizer.momentum=0.9"],
    ]
    # 16 combinations, 3 x 3 distinct trials, in Hydra's order (the last key varies fastest)
    assert [o for o, _ in trials] == [
        m + p + ["seed=0"] for m, p in itertools.product(models, optims)
    ]
    for overrides, params in trials:  # params: the swept values the trial kept, nothing else
        assert params == {
            k: (v if k in ("model", "optimizer") else float(v) if "." in v else int(v))
            for k, v in (o.split("=") for o in overrides)
            if k != "seed"
        }
    assert note == (
        "conditional: model.kernel_size left out where model=mlp; optimizer.momentum left out "
        "where optimizer=sgd: 16 trials collapse into 9"
    )


def test_random_space_leaves_out_a_sampled_key_its_option_lacks():
    args = [
        "optimizer=choice(sgd,momentum,nesterov)",
        "optimizer.momentum=interval(0.5,0.99)",
        "optimizer.lr=tag(log,interval(1e-3,1e-1))",
    ]
    trials, note = expand(args, kind="random", n=40, seed=3)
    assert len(trials) == 40  # an interval makes every trial distinct: nothing collapses
    by_opt = {
        o: [t for t in trials if t[1]["optimizer"] == o] for o in ("sgd", "momentum", "nesterov")
    }
    assert all(by_opt.values()), "40 draws over 3 options reach each one"
    for overrides, params in by_opt["sgd"]:
        assert "optimizer.momentum" not in params
        assert not any(o.startswith("optimizer.momentum=") for o in overrides)
    for opt in ("momentum", "nesterov"):
        for overrides, params in by_opt[opt]:
            assert 0.5 <= params["optimizer.momentum"] <= 0.99
            assert f"optimizer.momentum={overrides[1].split('=')[1]}" == overrides[1]
    # the same draws as without the condition: leaving a key out does not shift the sampler
    space = parse_space(args)
    plain = sample(space, 40, rng_for(3, 1))
    assert [p["optimizer.lr"] for _, p in trials] == [p["optimizer.lr"] for _, p in plain]
    n_sgd = len(by_opt["sgd"])
    assert (
        note
        == f"conditional: optimizer.momentum left out where optimizer=sgd ({n_sgd} of 40 trials)"
    )


@pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="optuna not installed")
def test_tpe_asks_a_conditional_key_only_of_the_options_that_have_it():
    from runner.sweep.space import TPE

    space = parse_space(["optimizer=choice(sgd,momentum)", "optimizer.momentum=interval(0.5,0.99)"])
    tpe = TPE(space, seed=0, n_startup_trials=2, cond=conditions(space, set(GROUPS), composed))
    seen = set()
    for i in range(8):
        trial, (overrides, params) = tpe.ask()
        seen.add(params["optimizer"])
        assert ("optimizer.momentum" in params) == (params["optimizer"] == "momentum")
        assert set(trial.params) == set(params)
        tpe.tell(trial, {"status": "completed", "objective": float(i), "mode": "max"})
    assert seen == {"sgd", "momentum"}
    # a resumed sweep's history: trials without the key are accepted
    again = TPE(space, seed=0, cond=tpe.cond)
    again.add({"optimizer": "sgd"}, {"status": "completed", "objective": 0.5})
    assert len(again.study.trials) == 1


class _Launcher:
    """Records the jobs a sweep launches and 'trains' each one instantly: its objective is the
    momentum it was given (0 without one), as Hydra's JobReturn carries a task's return value."""

    def __init__(self):
        self.jobs = []

    def launch(self, job_overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        rets = []
        for overrides in job_overrides:
            self.jobs.append([o for o in overrides if not o.startswith("hydra.")])
            m = [float(o.split("=")[1]) for o in overrides if o.startswith("optimizer.momentum=")]
            ret = JobReturn()
            ret.status = JobStatus.COMPLETED
            ret._return_value = m[0] if m else 0.0
            rets.append(ret)
        return rets


def test_a_fixed_key_of_a_swept_group_is_a_sweep_of_one_value():
    """Hydra sets fixed keys on the default option (adam) before any sweeper runs, where
    optimizer.momentum=0.9 fails: the command line makes it optimizer.momentum=choice(0.9),
    set in the trials whose optimizer has it (runner.shell.sweep_fixed_keys)."""
    from runner.shell import sweep_fixed_keys

    argv = ["-m", "optimizer=sgd,momentum", "optimizer.momentum=0.5", "optimizer.lr=0.1"]
    fixed = sweep_fixed_keys(argv)
    # lr: a key of adam too, Hydra applies it as it is
    assert fixed == ["-m", "optimizer=sgd,momentum", "optimizer.momentum=choice(0.5)", argv[3]]
    trials, _ = expand(fixed[1:])
    assert [o for o, _ in trials] == [
        ["optimizer=sgd", "optimizer.lr=0.1"],
        ["optimizer=momentum", "optimizer.momentum=0.5", "optimizer.lr=0.1"],
    ]
    assert composed(TINY + trials[1][0]).optimizer.momentum == 0.5
    assert sweep_fixed_keys(["--multirun", "optimizer=choice(sgd,momentum)", argv[2]])[2] == (
        "optimizer.momentum=choice(0.5)"
    )
    for unchanged in (
        argv[1:],  # not a multirun
        ["-m", "optimizer=momentum", "optimizer.momentum=0.5"],  # the group is not swept
        ["-m", "optimizer=sgd,momentum", "optimizer.momentum=0.5,0.9"],  # a sweep already
        ["-m", "optimizer=sgd,momentum", "optimizer.momentum='0.5'"],  # quoted: not rewritten
        ["-m", "optimizer=sgd,momentum", "optimizer.nesterovv=0.9"],  # no swept option has it
        ["-m", "optimizer=adam,sgd", "optimizer.b1=0.95"],  # the default (adam) has it
    ):
        assert sweep_fixed_keys(unchanged) == unchanged


def test_a_fixed_key_of_a_swept_group_left_as_it_is_says_to_sweep_it():
    """Where the command line leaves such a key (a quoted value, hydra.mode=MULTIRUN instead
    of -m), Hydra's error says what to write instead."""
    from runner.shell import _unknown_key

    argv = ["optimizer=sgd,momentum", "optimizer.momentum=0.9"]
    assert _unknown_key("optimizer.momentum", argv) == (
        "optimizer.momentum=0.9: not a setting of optimizer=adam, the default, on which a "
        "multirun sets its fixed keys; write optimizer.momentum='choice(0.9)' to set it in the "
        "trials of optimizer=momentum only"
    )
    trials, _ = expand(["optimizer=choice(sgd,momentum)", "optimizer.momentum=choice(0.9)"])
    assert [o for o, _ in trials] == [
        ["optimizer=sgd"],
        ["optimizer=momentum", "optimizer.momentum=0.9"],
    ]
    argv = ["optimizer=sgd,momentum", "optimizer.nesterovv=0.9"]
    assert _unknown_key("optimizer.nesterovv", argv) == (
        "optimizer.nesterovv=0.9: not a setting of any option swept (optimizer=sgd,momentum): "
        "optimizer=sgd has lr, name; optimizer=momentum has lr, momentum, name"
    )


def test_sweep_runs_the_collapsed_trials_and_reports_the_missing_key(tmp_path, capsys):
    from omegaconf import open_dict

    from runner.sweep.run import run_sweep

    config = compose(TINY, return_hydra_config=True)
    with open_dict(config):
        config.hydra.sweep.dir = str(tmp_path / "sweep")
    launcher = _Launcher()
    opts = {"kind": "grid", "plot": False, "progress": False}
    args = ["optimizer=sgd,momentum", "optimizer.momentum=0.5,0.9", *TINY]
    run_sweep(opts, args, config=config, hydra_context=None, launcher=launcher)
    assert launcher.jobs == [
        ["optimizer=sgd", "debug=tiny"],
        ["optimizer=momentum", "optimizer.momentum=0.5", "debug=tiny"],
        ["optimizer=momentum", "optimizer.momentum=0.9", "debug=tiny"],
    ]
    out, err = capsys.readouterr()
    assert "sweep: running 3 trials (grid)" in err
    assert (
        "sweep: conditional: optimizer.momentum left out where optimizer=sgd: 4 trials "
        "collapse into 3\n" in err
    )
    summ = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert [r["params"] for r in summ["trials"]] == [
        {"optimizer": "sgd"},
        {"optimizer": "momentum", "optimizer.momentum": 0.5},
        {"optimizer": "momentum", "optimizer.momentum": 0.9},
    ]
    assert summ["best"]["job"] == 2 and summ["best"]["objective"] == 0.9
    plan = json.loads((tmp_path / "sweep" / "trials.json").read_text())
    assert (
        plan["stages"][0]["n_trials"] == 3 and "collapse into 3" in plan["stages"][0]["conditional"]
    )
    # the closing table: the sgd row shows — under momentum, the key it does not have
    row = next(line.split() for line in out.splitlines() if " sgd " in line)
    assert row[-3] == "—", out


def test_compare_shows_a_key_a_run_does_not_have_as_a_dash(tmp_path):
    from conftest import run_main
    from test_compare import config, make_run, metrics_for

    root = tmp_path / "sweep"
    runs = [("sgd", None, 0.5), ("momentum", 0.5, 0.6), ("momentum", 0.9, 0.7)]
    for job, (opt, momentum, acc) in enumerate(runs):
        cfg = config(opt, 0.01)
        overrides = [f"optimizer={opt}"]
        if momentum is not None:
            cfg["optimizer"]["momentum"] = momentum
            overrides.append(f"optimizer.momentum={momentum}")
        make_run(root / str(job), cfg, overrides, metrics_for(acc, 5, 1.0))
    code, out, err = run_main(["compare", str(root)])
    assert code == 0, err
    cells = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:5]}
    col = out.splitlines()[0].split().index("optimizer.momentum") - 1  # id: the row's key
    assert [cells[j][col] for j in "012"] == ["—", "0.5", "0.9"], out


def test_random_search_draws_again_for_the_trials_that_collapse():
    from runner.sweep.space import sample_trials

    args = [
        "optimizer=choice(sgd,momentum)",
        "optimizer.momentum=choice(0.5,0.9)",
        "optimizer.lr=choice(0.01,0.1)",
    ]
    space = parse_space(args)
    cond = conditions(space, set(GROUPS), composed)
    first, note = cond.apply(sample(space, 5, rng_for(3, 1)))
    assert len(first) < 5 and "collapse into" in note  # seed 3: sgd drawn with equal lrs
    trials, note = sample_trials(space, 5, 3, 1, cond)
    assert len(trials) == 5 and trials[: len(first)] == first  # the first draws kept, in order
    assert note.endswith(f"; {5 - len(first)} more drawn to run 5")

    # a space that collapses into fewer trials than asked for: 16 x 3 draws, then it says so
    class Collapsing:  # every trial collapses into one (as if each left out all its keys)
        def __bool__(self):
            return True

        def apply(self, planned):
            return planned[:1], "conditional: x left out"

    trials, note = sample_trials(space, 3, 3, 1, Collapsing())
    assert len(trials) == 1 and note == "conditional: x left out; 1 trials after 48 draws"
    # intervals: every trial distinct, nothing drawn again, the note as before
    space = parse_space(
        [
            "optimizer=choice(sgd,momentum)",
            "optimizer.momentum=interval(0.5,0.99)",
            "optimizer.lr=interval(0.001,0.1)",
        ]
    )
    cond = conditions(space, set(GROUPS), composed)
    assert sample_trials(space, 6, 0, 1, cond) == cond.apply(sample(space, 6, rng_for(0, 1)))
