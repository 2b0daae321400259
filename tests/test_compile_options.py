"""trainer.compile: which XLA options each program is compiled with (runner.core.train's rule,
runner.core.programs.Programs.compile_options), its cost model, and the knob's checks."""

from __future__ import annotations

import dataclasses

import jax
import pytest
from conftest import TINY, compose, run_inprocess

from runner.config import ConfigError, validate
from runner.core import train
from runner.core.programs import FAST, GROUP_ONCE, QUICK
from runner.core.spec import Spec, make_spec
from runner.data import load_dataset

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="the options are CPU-only: other backends get None"
)


@pytest.fixture(scope="module")
def spec() -> Spec:
    cfg = validate(compose(TINY))
    return make_spec(cfg, load_dataset(cfg.data))


def _with(
    spec: Spec, *, hidden=None, arch=None, activation=None, steps=None, batch=None, mode=None
):
    model = dataclasses.replace(
        spec.model,
        hidden=spec.model.hidden if hidden is None else hidden,
        arch=arch or spec.model.arch,
        activation=activation or spec.model.activation,
        maxout_k=3,
    )
    sched = dataclasses.replace(spec.sched, total_steps=steps or spec.sched.total_steps)
    return dataclasses.replace(
        spec,
        model=model,
        sched=sched,
        input_shape=(8, 8),
        batch_size=batch or spec.batch_size,
        compile=mode or spec.compile,
    )


def test_training_flops_count_six_per_dense_weight_and_example(spec):
    s = _with(spec, hidden=(128, 128), batch=64, steps=400)
    n_out = s.model.n_out
    assert train.training_flops(s) == 6 * (64 * 128 + 128 * 128 + 128 * n_out) * 64 * 400
    # maxout layers have k outputs per unit; a resmlp's widening block adds its skip projection
    m = _with(spec, hidden=(16,), activation="maxout", batch=2, steps=5)
    assert train.training_flops(m) == 6 * (64 * 16 * 3 + 16 * n_out) * 2 * 5
    r = _with(spec, arch="resmlp", hidden=(16, 32), batch=2, steps=5)
    assert train.training_flops(r) == 6 * (64 * 16 + 16 * 32 * 2 + 32 * n_out) * 2 * 5
    assert train.training_flops(_with(spec, arch="cnn")) is None


def test_auto_compiles_a_small_dense_models_epoch_fast_and_the_rest_fully(spec):
    small = _with(spec, hidden=(128, 128), batch=64, steps=400)  # the default run: ~4 GFLOP
    big = _with(spec, hidden=(2048, 2048), batch=512, steps=400)  # ~1 TFLOP
    many_steps = _with(spec, hidden=(16,), batch=1, steps=5000)  # 15 s of per-update overhead
    rule = train.compile_options
    assert train.fast_pays(small) and rule(train.epoch, small, ()) == FAST
    assert not train.fast_pays(big) and rule(train.epoch, big, ()) is None
    assert not train.fast_pays(many_steps) and rule(train.epoch, many_steps, ()) is None
    conv = _with(small, arch="cnn")
    assert not train.fast_pays(conv) and rule(train.epoch, conv, ()) is None
    # a run's run-once programs always quick, a vectorised group's optimised with the older
    # fusion emitters, its epochs fully (under auto)
    for s in (small, big, conv):
        assert rule(train.init_state, s, ()) == QUICK
        assert rule(train.evaluate_splits, s, ()) == QUICK
        assert rule(train.init_states, s, ()) == GROUP_ONCE
        assert rule(train.evaluate_members, s, ()) == GROUP_ONCE
        assert rule(train.epochs_masked, s, ()) is None
    assert GROUP_ONCE == {
        "xla_backend_optimization_level": "2",
        "xla_cpu_use_fusion_emitters": False,
    }
    assert train.PROGRAMS.options_for is rule


def test_fast_and_full_override_the_rule_for_every_program(spec):
    rule = train.compile_options
    for fn in (train.init_state, train.epoch, train.evaluate_splits, train.epochs_masked):
        big = _with(spec, hidden=(2048, 2048), batch=512, steps=400, mode="fast")
        assert rule(fn, big, ()) == (QUICK if fn in train.RUN_ONCE else FAST), fn.__name__
        small = _with(spec, hidden=(16,), batch=8, steps=10, mode="full")
        assert rule(fn, small, ()) is None, fn.__name__


def test_a_run_with_compile_fast_compiles_a_cnns_epoch_quickly(monkeypatch):
    seen = []
    rule = train.PROGRAMS.options_for

    def spy(fn, spec, args):
        options = rule(fn, spec, args)
        seen.append((fn.__name__, spec.compile, options))
        return options

    monkeypatch.setattr(train.PROGRAMS, "options_for", spy)
    cfg, result = run_inprocess(["model=cnn", "model.depth=1", "trainer.compile=fast"])
    assert cfg.trainer.compile == "fast" and result.status == "completed"
    # auto would have compiled a cnn's epoch program with full optimisation
    assert sorted(seen) == [
        ("epoch", "fast", FAST),
        ("evaluate_splits", "fast", QUICK),
        ("init_state", "fast", QUICK),
    ]
    auto = dataclasses.replace(make_spec(cfg, load_dataset(cfg.data)), compile="auto")
    assert rule(train.epoch, auto, ()) is None


def test_a_bad_compile_value_is_one_line_naming_the_choices():
    with pytest.raises(ConfigError) as e:
        validate(compose(["trainer.compile=quick"]))
    assert str(e.value) == "trainer.compile='quick': unknown; choose one of auto, fast, full"
