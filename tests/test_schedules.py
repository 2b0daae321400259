"""Learning-rate schedules against their closed forms (runner.core.schedules)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from runner.core.schedules import learning_rate
from runner.core.spec import SchedSpec


def make_hp(**kw):
    hp = dict(
        lr=0.1,
        k=0.1,
        factor=0.5,
        every=10.0,
        boundaries=[],
        factors=[],
        base_lr=0.01,
        max_lr=0.1,
        step_size=2.0,
        gamma=0.99,
        decay_steps=10.0,
        final_fraction=0.0,
        warmup=0.0,
        warmup_start=0.0,
    )
    hp.update(kw)
    return {k: np.asarray(v, np.float32) for k, v in hp.items()}


def make_spec(
    name,
    unit="epoch",
    staircase=True,
    policy="triangular",
    window="triangular",
    n_boundaries=0,
    steps_per_epoch=10,
    warmup=False,
):
    return SchedSpec(
        name=name,
        unit=unit,
        staircase=staircase,
        policy=policy,
        window=window,
        n_boundaries=n_boundaries,
        steps_per_epoch=steps_per_epoch,
        total_steps=100 * steps_per_epoch,
        warmup=warmup,
    )


# One compiled program per spec: the steps are vmapped, hp is a traced argument.
@functools.partial(jax.jit, static_argnums=1)
def _lrs(steps, spec, hp):
    return jax.vmap(learning_rate, in_axes=(0, None, None))(steps, spec, hp)


def lrs(spec, hp, steps):
    return np.asarray(_lrs(jnp.asarray(steps, jnp.int32), spec, hp), np.float64)


def test_constant():
    out = lrs(make_spec("constant"), make_hp(lr=0.3), [0, 1, 57, 1000])
    np.testing.assert_allclose(out, 0.3, rtol=1e-6)
    assert _lrs(jnp.arange(2), make_spec("constant"), make_hp()).dtype == jnp.float32


def test_time_based_matches_the_notes_table():
    # notes: eta0 = 0.2, decay_rate = 1 -> 0.1, 0.067, 0.05, 0.04 at epochs 1..4
    spec = make_spec("time_based", unit="epoch", staircase=True, steps_per_epoch=10)
    out = lrs(spec, make_hp(lr=0.2, k=1.0), [10, 20, 30, 40])
    assert [round(v, 4) for v in out] == [0.1, 0.0667, 0.05, 0.04]
    # staircase: constant within an epoch; starts at lr0
    np.testing.assert_allclose(
        lrs(spec, make_hp(lr=0.2, k=1.0), [0, 9, 15, 19]), [0.2, 0.2, 0.1, 0.1], rtol=1e-6
    )


def test_staircase_vs_fractional_epochs():
    hp = make_hp(lr=0.2, k=1.0)
    frac = lrs(make_spec("time_based", staircase=False, steps_per_epoch=10), hp, [0, 5, 15, 20])
    np.testing.assert_allclose(frac, [0.2, 0.2 / 1.5, 0.2 / 2.5, 0.2 / 3], rtol=1e-6)


def test_iteration_vs_epoch_unit():
    hp = make_hp(lr=1.0, k=0.1)
    it = lrs(make_spec("exponential", unit="iteration"), hp, [0, 3, 25])
    np.testing.assert_allclose(it, np.exp(-0.1 * np.array([0, 3, 25])), rtol=1e-6)
    ep = lrs(
        make_spec("exponential", unit="epoch", staircase=True, steps_per_epoch=10), hp, [0, 3, 25]
    )
    np.testing.assert_allclose(ep, np.exp(-0.1 * np.array([0, 0, 2])), rtol=1e-6)
    epf = lrs(
        make_spec("exponential", unit="epoch", staircase=False, steps_per_epoch=10), hp, [0, 3, 25]
    )
    np.testing.assert_allclose(epf, np.exp(-0.1 * np.array([0, 0.3, 2.5])), rtol=1e-6)


def test_step_decay():
    spec = make_spec("step", unit="epoch", steps_per_epoch=4)
    epochs = np.arange(10)
    out = lrs(spec, make_hp(lr=0.8, factor=0.5, every=3.0), epochs * 4 + 1)
    np.testing.assert_allclose(out, 0.8 * 0.5 ** (epochs // 3), rtol=1e-6)


def test_exponential():
    out = lrs(make_spec("exponential", unit="iteration"), make_hp(lr=0.5, k=0.02), [0, 10, 100])
    np.testing.assert_allclose(out, 0.5 * np.exp(-0.02 * np.array([0, 10, 100])), rtol=1e-5)


def test_piecewise():
    hp = make_hp(lr=1.0, boundaries=[2.0, 5.0], factors=[0.5, 0.1])
    spec = make_spec("piecewise", unit="iteration", n_boundaries=2)
    out = lrs(spec, hp, [0, 1, 2, 4, 5, 9])
    np.testing.assert_allclose(out, [1, 1, 0.5, 0.5, 0.1, 0.1], rtol=1e-6)
    # fractional epochs: the boundary is crossed mid-epoch
    spec_f = make_spec(
        "piecewise", unit="epoch", staircase=False, n_boundaries=2, steps_per_epoch=10
    )
    np.testing.assert_allclose(lrs(spec_f, hp, [19, 20, 49, 50]), [1, 0.5, 0.5, 0.1], rtol=1e-6)


BASE, MAX, SS = 0.01, 0.11, 4.0
WINDOW = {
    "triangular": lambda x: 1 - x,
    "welch": lambda x: 1 - x**2,
    "hann": lambda x: (1 + math.cos(math.pi * x)) / 2,
}


@pytest.mark.parametrize("policy", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("window", ["triangular", "welch", "hann"])
def test_cyclic(policy, window):
    gamma = 0.9
    hp = make_hp(base_lr=BASE, max_lr=MAX, step_size=SS, gamma=gamma)
    spec = make_spec("cyclic", unit="iteration", policy=policy, window=window)
    steps = [0, 2, 4, 6, 8, 10, 12, 16]  # 0, ss/2, ss, 1.5ss, 2ss, then cycle 2
    # x per step (0 at a peak, 1 at the bounds) and cycle number
    xs = [1, 0.5, 0, 0.5, 1, 0.5, 0, 1]
    cycles = [1, 1, 1, 1, 2, 2, 2, 3]
    out = lrs(spec, hp, steps)
    w = WINDOW[window]
    for s, x, c, got in zip(steps, xs, cycles, out):
        scale = {"triangular": 1.0, "triangular2": 0.5 ** (c - 1), "exp_range": gamma**s}[policy]
        want = BASE + (MAX - BASE) * w(x) * scale
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7), (s, got, want)
    assert out[0] == pytest.approx(BASE)  # a cycle starts at base_lr
    if policy == "triangular":
        assert out[2] == pytest.approx(MAX) and out[6] == pytest.approx(MAX)
    if policy == "triangular2":  # amplitude halves in cycle 2
        assert out[6] - BASE == pytest.approx((out[2] - BASE) / 2, rel=1e-5)


def test_cyclic_window_values_at_half_step():
    spec = lambda w: make_spec("cyclic", unit="iteration", window=w)
    hp = make_hp(base_lr=0.0 + 1e-9, max_lr=1.0, step_size=4.0)
    got = {w: lrs(spec(w), hp, [2])[0] for w in WINDOW}
    assert got["triangular"] == pytest.approx(0.5, abs=1e-6)
    assert got["welch"] == pytest.approx(0.75, abs=1e-6)
    assert got["hann"] == pytest.approx(0.5, abs=1e-6)


def test_cyclic_uses_fractional_epochs_even_with_staircase():
    hp = make_hp(base_lr=0.0 + 1e-9, max_lr=1.0, step_size=2.0)
    spec = make_spec("cyclic", unit="epoch", staircase=True, steps_per_epoch=10)
    # step 5 = 0.5 epochs: x = |0.25 - 1| = 0.75 -> 0.25; step 20 = 2 epochs = peak
    np.testing.assert_allclose(lrs(spec, hp, [5, 10, 20, 30]), [0.25, 0.5, 1.0, 0.5], atol=1e-6)


def test_cosine():
    hp = make_hp(lr=0.4, decay_steps=10.0, final_fraction=0.1)
    spec = make_spec("cosine", unit="iteration")
    out = lrs(spec, hp, [0, 5, 10, 15])
    np.testing.assert_allclose(out, [0.4, 0.4 * (0.1 + 0.9 * 0.5), 0.04, 0.04], rtol=1e-5)
    out0 = lrs(spec, make_hp(lr=0.4, decay_steps=10.0, final_fraction=0.0), [0, 5, 10])
    np.testing.assert_allclose(out0, [0.4, 0.2, 0.0], atol=1e-7)


def test_warmup_ramp_then_main_schedule():
    hp = make_hp(lr=1.0, warmup=2.0, warmup_start=0.1, factor=0.5, every=1.0)
    spec = make_spec("constant", unit="epoch", steps_per_epoch=10, warmup=True)
    out = lrs(spec, hp, [0, 5, 10, 15, 20, 100])
    np.testing.assert_allclose(
        out, [0.1, 0.1 + 0.9 * 0.25, 0.55, 0.1 + 0.9 * 0.75, 1.0, 1.0], rtol=1e-6
    )
    # the main schedule's clock starts after the warmup: step decay every epoch
    spec_s = make_spec("step", unit="epoch", steps_per_epoch=10, warmup=True, staircase=True)
    np.testing.assert_allclose(
        lrs(spec_s, hp, [10, 20, 25, 30, 40]), [0.55, 1.0, 1.0, 0.5, 0.25], rtol=1e-6
    )
    spec_f = make_spec("step", unit="epoch", steps_per_epoch=10, warmup=True, staircase=False)
    assert lrs(spec_f, hp, [25])[0] == pytest.approx(1.0)  # floor(0.5 / every) = 0


def test_jit_with_traced_hp_and_vmap_over_hp():
    spec = make_spec("time_based", unit="iteration")
    f = jax.jit(lambda step, hp: learning_rate(step, spec, hp))
    hp_a, hp_b = make_hp(lr=0.1, k=1.0), make_hp(lr=0.2, k=1.0)
    assert float(f(jnp.int32(1), hp_a)) == pytest.approx(0.05)
    assert float(f(jnp.int32(1), hp_b)) == pytest.approx(0.1)
    batch = jax.tree.map(lambda a, b: jnp.stack([a, b]), hp_a, hp_b)
    out = jax.vmap(lambda hp: learning_rate(jnp.int32(3), spec, hp))(batch)
    np.testing.assert_allclose(np.asarray(out), [0.1 / 4, 0.2 / 4], rtol=1e-6)
    # cyclic and piecewise vmap too (array-valued hp keys)
    spec_p = make_spec("piecewise", unit="iteration", n_boundaries=1)
    hp_p = [make_hp(lr=lr, boundaries=[2.0], factors=[0.5]) for lr in (1.0, 2.0)]
    batch_p = jax.tree.map(lambda a, b: jnp.stack([a, b]), *hp_p)
    out_p = jax.jit(jax.vmap(lambda hp: learning_rate(jnp.int32(2), spec_p, hp)))(batch_p)
    np.testing.assert_allclose(np.asarray(out_p), [0.5, 1.0], rtol=1e-6)
