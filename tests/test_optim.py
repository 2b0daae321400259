"""Optimizers, clipping, weight decay and penalties against their formulas (runner.core.optim)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from runner.core.optim import OPTIMIZER_NAMES, decay_mask, global_norm, make_optimizer, penalty
from runner.core.spec import OptimSpec

W = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
B = np.array([0.1, -0.2], np.float32)
G1 = {
    "dense": {
        "kernel": np.array([[0.3, -0.1], [2.0, 0.05]], np.float32),
        "bias": np.array([-0.4, 0.2], np.float32),
    }
}
G2 = {
    "dense": {
        "kernel": np.array([[-0.2, 0.4], [1.0, -0.3]], np.float32),
        "bias": np.array([0.1, 0.6], np.float32),
    }
}


def params():
    return {"dense": {"kernel": jnp.asarray(W), "bias": jnp.asarray(B)}}


def make_hp(**kw):
    hp = dict(
        lr=0.1,
        momentum=0.9,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        rho=0.9,
        decay=0.9,
        initial_accumulator_value=0.1,
        adamw_weight_decay=0.0,
        weight_decay=0.0,
        clip_norm=np.inf,
        clip_value=np.inf,
        l1=0.0,
        l2=0.0,
    )
    hp.update(kw)
    return {k: np.asarray(v, np.float32) for k, v in hp.items()}


def make_spec(name, centered=False, clip_norm=False, clip_value=False, pbn=False):
    return OptimSpec(
        name=name,
        centered=centered,
        clip_norm=clip_norm,
        clip_value=clip_value,
        penalize_bias_and_norm=pbn,
    )


@functools.partial(jax.jit, static_argnums=0)
def _run(spec, hp, lrs, grads, p0):
    """Apply a sequence of (lr, grad) updates; return every step's update. The optimizer is
    built from traced hp/lr at init and again inside each step."""
    mask = decay_mask(p0, spec.penalize_bias_and_norm)
    state = make_optimizer(spec, hp, lrs[0], mask).init(p0)

    def step(carry, xs):
        p, st = carry
        lr, g = xs
        upd, st = make_optimizer(spec, hp, lr, mask).update(g, st, p)
        return (optax.apply_updates(p, upd), st), upd

    _, upds = jax.lax.scan(step, (p0, state), (lrs, grads))
    return upds


def run(spec, hp, grads, lr=None):
    lr = hp["lr"] if lr is None else lr
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *grads)
    lrs = jnp.full((len(grads),), lr, jnp.float32)
    upds = _run(spec, hp, lrs, stacked, params())
    return [
        jax.tree.map(lambda u, i=i: np.asarray(u[i], np.float64), upds) for i in range(len(grads))
    ]


def close(tree, want, rtol=1e-5, atol=1e-7):
    for got, w in zip(jax.tree.leaves(tree), jax.tree.leaves(want)):
        np.testing.assert_allclose(
            np.asarray(got, np.float64), np.asarray(w, np.float64), rtol=rtol, atol=atol
        )


def tmap(f, *trees):
    return jax.tree.map(lambda *a: f(*[np.asarray(x, np.float64) for x in a]), *trees)


LR = 0.1


def test_sgd():
    (u,) = run(make_spec("sgd"), make_hp(lr=LR), [G1])
    close(u, tmap(lambda g: -LR * g, G1))


def test_momentum_two_steps_optax_and_notes_convention():
    mu = 0.9
    u1, u2 = run(make_spec("momentum"), make_hp(lr=LR, momentum=mu), [G1, G2])
    # optax: v_t = mu v_{t-1} + g_t, update = -lr v_t
    close(u1, tmap(lambda g: -LR * g, G1))
    close(u2, tmap(lambda a, b: -LR * (mu * a + b), G1, G2))
    # notes: change_t = gamma change_{t-1} + eta grad_t, w <- w - change_t (same for constant eta)
    change1 = tmap(lambda g: LR * g, G1)
    change2 = tmap(lambda c, g: mu * c + LR * g, change1, G2)
    close(u2, tmap(lambda c: -c, change2))


def test_nesterov():
    mu = 0.9
    u1, u2 = run(make_spec("nesterov"), make_hp(lr=LR, momentum=mu), [G1, G2])
    close(u1, tmap(lambda g: -LR * (g + mu * g), G1))
    close(u2, tmap(lambda a, b: -LR * (b + mu * (mu * a + b)), G1, G2))


def test_adagrad():
    a0, eps = 0.1, 1e-7
    u1, u2 = run(
        make_spec("adagrad"), make_hp(lr=LR, initial_accumulator_value=a0, eps=eps), [G1, G2]
    )
    close(u1, tmap(lambda g: -LR * g / np.sqrt(a0 + g**2 + eps), G1))
    close(u2, tmap(lambda a, b: -LR * b / np.sqrt(a0 + a**2 + b**2 + eps), G1, G2))


def test_adadelta_formula():
    rho, eps, lr = 0.9, 1e-6, 1.0
    u1, u2 = run(make_spec("adadelta"), make_hp(lr=lr, rho=rho, eps=eps), [G1, G2])

    def ref(g1, g2):
        eg = (1 - rho) * g1**2
        d1 = np.sqrt(0 + eps) / np.sqrt(eg + eps) * g1
        ex = (1 - rho) * d1**2
        eg = rho * eg + (1 - rho) * g2**2
        d2 = np.sqrt(ex + eps) / np.sqrt(eg + eps) * g2
        return -lr * d1, -lr * d2

    close(u1, tmap(lambda a, b: ref(a, b)[0], G1, G2), rtol=1e-4)
    close(u2, tmap(lambda a, b: ref(a, b)[1], G1, G2), rtol=1e-4)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("mu", [0.0, 0.9])
def test_rmsprop(centered, mu):
    rho, eps = 0.9, 1e-2  # a large eps makes its place visible: the notes' sqrt(s + eps)
    u1, u2 = run(
        make_spec("rmsprop", centered=centered),
        make_hp(lr=LR, decay=rho, eps=eps, momentum=mu),
        [G1, G2],
    )

    def ref(g1, g2):
        s1 = (1 - rho) * g1**2
        s2 = rho * s1 + (1 - rho) * g2**2
        m1 = (1 - rho) * g1
        m2 = rho * m1 + (1 - rho) * g2
        if centered:
            r1, r2 = g1 / np.sqrt(s1 - m1**2 + eps), g2 / np.sqrt(s2 - m2**2 + eps)
        else:
            r1, r2 = g1 / np.sqrt(s1 + eps), g2 / np.sqrt(s2 + eps)
        # momentum (0: plain RMSProp): change_t = mu change_{t-1} + lr r_t
        return -LR * r1, -(mu * LR * r1 + LR * r2)

    close(u1, tmap(lambda a, b: ref(a, b)[0], G1, G2), rtol=1e-4)
    close(u2, tmap(lambda a, b: ref(a, b)[1], G1, G2), rtol=1e-4)


def _adam_ref(g1, g2, b1, b2, eps, nesterov=False):
    out, m, v = [], 0.0, 0.0
    for t, g in enumerate((g1, g2), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        if nesterov:
            m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        else:
            m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        out.append(-LR * m_hat / (np.sqrt(v_hat) + eps))
    return out


@pytest.mark.parametrize("name", ["adam", "nadam"])
def test_adam_and_nadam(name):
    b1, b2, eps = 0.9, 0.999, 1e-8
    u1, u2 = run(make_spec(name), make_hp(lr=LR, b1=b1, b2=b2, eps=eps), [G1, G2])
    nest = name == "nadam"
    close(u1, tmap(lambda a, b: _adam_ref(a, b, b1, b2, eps, nest)[0], G1, G2), rtol=1e-4)
    close(u2, tmap(lambda a, b: _adam_ref(a, b, b1, b2, eps, nest)[1], G1, G2), rtol=1e-4)
    if name == "adam":  # first step: -lr * sign(g) (up to eps)
        close(u1, tmap(lambda g: -LR * np.sign(g), G1), rtol=1e-5)


def test_adamw_decays_kernels_only():
    lam, eps = 0.05, 1e-8
    (u,) = run(make_spec("adamw"), make_hp(lr=LR, adamw_weight_decay=lam, eps=eps), [G1])
    g = G1["dense"]
    np.testing.assert_allclose(
        u["dense"]["kernel"], -LR * (g["kernel"] / (np.abs(g["kernel"]) + eps) + lam * W), rtol=1e-5
    )
    np.testing.assert_allclose(
        u["dense"]["bias"], -LR * g["bias"] / (np.abs(g["bias"]) + eps), rtol=1e-5
    )


@pytest.mark.parametrize("pbn", [False, True])
def test_decoupled_weight_decay(pbn):
    wd = 0.3
    (u,) = run(make_spec("sgd", pbn=pbn), make_hp(lr=LR, weight_decay=wd), [G1])
    g = G1["dense"]
    np.testing.assert_allclose(u["dense"]["kernel"], -LR * g["kernel"] - LR * wd * W, rtol=1e-5)
    want_b = -LR * g["bias"] - (LR * wd * B if pbn else 0.0)
    np.testing.assert_allclose(u["dense"]["bias"], want_b, rtol=1e-5)
    # with momentum: decoupled = base update minus lr * wd * w
    (um,) = run(make_spec("momentum"), make_hp(lr=LR, weight_decay=wd), [G1])
    np.testing.assert_allclose(um["dense"]["kernel"], -LR * g["kernel"] - LR * wd * W, rtol=1e-5)


def test_decay_mask():
    p = {
        "Dense_0": {"kernel": 1.0, "bias": 2.0},
        "BatchNorm_0": {"scale": 1.0, "bias": 0.0},
        "Conv_0": {"kernel": 1.0},
        "PReLU_0": {"prelu_slope": 0.25},
        "act": {"prelu": 0.1},
    }
    m = decay_mask(p, False)
    assert m["Dense_0"] == {"kernel": True, "bias": False}
    assert m["BatchNorm_0"] == {"scale": False, "bias": False}
    assert m["Conv_0"]["kernel"] is True
    assert m["PReLU_0"]["prelu_slope"] is False and m["act"]["prelu"] is False
    m = decay_mask(p, True)
    assert m["Dense_0"] == {"kernel": True, "bias": True}
    assert m["BatchNorm_0"] == {"scale": True, "bias": True}
    assert m["PReLU_0"]["prelu_slope"] is False and m["act"]["prelu"] is False
    assert jax.tree.structure(m) == jax.tree.structure(p)


@pytest.mark.parametrize("pbn", [False, True])
def test_l2_and_l1_penalty_gradients(pbn):
    p = params()
    p["dense"]["bias"] = jnp.array([0.1, 0.0])  # a zero entry: L1 subgradient 0
    mask = decay_mask(p, pbn)
    grad = jax.jit(jax.grad(lambda p, hp: penalty(p, mask, hp)))  # the mask is static
    g2 = grad(p, make_hp(l2=0.2))
    np.testing.assert_allclose(g2["dense"]["kernel"], 0.2 * W, rtol=1e-6)
    np.testing.assert_allclose(
        g2["dense"]["bias"], 0.2 * np.array([0.1, 0.0]) if pbn else 0.0, rtol=1e-6
    )
    g1 = grad(p, make_hp(l1=0.3))
    np.testing.assert_allclose(g1["dense"]["kernel"], 0.3 * np.sign(W), rtol=1e-6)
    np.testing.assert_allclose(g1["dense"]["bias"], [0.3, 0.0] if pbn else 0.0, rtol=1e-6)
    # value: l2/2 * sum w^2 + l1 * sum |w|
    val = float(penalty(p, mask, make_hp(l2=0.2, l1=0.3)))
    ws = [W, np.array([0.1, 0.0])] if pbn else [W]
    want = 0.1 * sum((w**2).sum() for w in ws) + 0.3 * sum(np.abs(w).sum() for w in ws)
    assert val == pytest.approx(want, rel=1e-5)
    # a mask of arrays (e.g. traced) works too
    arr_mask = jax.tree.map(jnp.asarray, mask)
    assert float(jax.jit(penalty)(p, arr_mask, make_hp(l2=0.2, l1=0.3))) == pytest.approx(
        want, rel=1e-5
    )


def test_clip_by_global_norm():
    c = 1.0
    spec, hp = make_spec("sgd", clip_norm=True), make_hp(lr=1.0, clip_norm=c)
    assert float(global_norm(G1)) > c
    (u,) = run(spec, hp, [G1])
    assert float(global_norm(u)) == pytest.approx(c, rel=1e-5)
    n = float(global_norm(G1))
    close(u, tmap(lambda g: -g * c / n, G1))  # direction unchanged
    small = jax.tree.map(lambda g: g * 0.1 / n, G1)  # norm 0.1 < c: untouched
    (u,) = run(spec, hp, [small])
    close(u, tmap(lambda g: -g, small))


def test_clip_by_value():
    v = 0.25
    (u,) = run(make_spec("sgd", clip_value=True), make_hp(lr=1.0, clip_value=v), [G1])
    close(u, tmap(lambda g: -np.clip(g, -v, v), G1))
    assert max(float(np.abs(x).max()) for x in jax.tree.leaves(u)) <= v + 1e-7


def test_clip_value_then_norm():
    spec = make_spec("sgd", clip_value=True, clip_norm=True)
    (u,) = run(spec, make_hp(lr=1.0, clip_value=0.25, clip_norm=0.3), [G1])
    clipped = tmap(lambda g: np.clip(g, -0.25, 0.25), G1)
    n = np.sqrt(sum((x**2).sum() for x in jax.tree.leaves(clipped)))
    close(u, tmap(lambda g: -g * 0.3 / n, clipped))


QUAD_LR = {
    "sgd": 0.1,
    "momentum": 0.05,
    "nesterov": 0.05,
    "adagrad": 0.3,
    "adadelta": 1.0,
    "rmsprop": 0.05,
    "adam": 0.05,
    "nadam": 0.05,
    "adamw": 0.05,
}
SCALES = {
    "dense": {
        "kernel": np.array([[1.0, 3.0], [0.5, 2.0]], np.float32),
        "bias": np.array([1.0, 0.2], np.float32),
    }
}


@functools.partial(jax.jit, static_argnums=0)
def _descend(spec, hp, p0):
    def loss(p):
        return sum(
            0.5 * jnp.sum(s * (w - 0.3) ** 2)
            for w, s in zip(jax.tree.leaves(p), jax.tree.leaves(SCALES))
        )

    mask = decay_mask(p0, False)
    state = make_optimizer(spec, hp, hp["lr"], mask).init(p0)

    def step(carry, _):
        p, st = carry
        loss_value, g = jax.value_and_grad(loss)(p)
        upd, st = make_optimizer(spec, hp, hp["lr"], mask).update(g, st, p)
        return (optax.apply_updates(p, upd), st), loss_value

    (p, _), losses = jax.lax.scan(step, (p0, state), None, length=20)
    return jnp.append(losses, loss(p))


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_every_optimizer_descends_a_quadratic(name):
    hp = make_hp(
        lr=QUAD_LR[name],
        eps=1e-6 if name == "adadelta" else 1e-8,
        momentum=0.0 if name == "rmsprop" else 0.9,
    )
    losses = np.asarray(_descend(make_spec(name), hp, params()))
    assert np.all(np.isfinite(losses))
    assert losses[3] < losses[0]  # already going down after a few steps (adadelta too)
    if name == "adadelta":  # slow with lr = 1 (its units come from sqrt(eps)), but it descends
        assert np.all(np.diff(losses) < 0)
    else:
        assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_state_structure_independent_of_hp(name):
    spec = make_spec(name, clip_norm=True, clip_value=True)
    p = params()
    mask = decay_mask(p, False)
    hp_a = make_hp(lr=0.1, momentum=0.5, weight_decay=0.0, adamw_weight_decay=0.0)
    hp_b = make_hp(
        lr=0.3,
        momentum=0.9,
        weight_decay=0.1,
        adamw_weight_decay=0.01,
        clip_norm=1.0,
        clip_value=0.5,
    )
    s_a = make_optimizer(spec, hp_a, hp_a["lr"], mask).init(p)
    s_b = make_optimizer(spec, hp_b, jnp.float32(0.02), mask).init(p)
    assert jax.tree.structure(s_a) == jax.tree.structure(s_b)

    @jax.jit
    def upd(hp, st):
        return make_optimizer(spec, hp, hp["lr"] * 0.5, mask).update(G1, st, p)[1]

    assert jax.tree.structure(upd(hp_b, s_a)) == jax.tree.structure(s_a)


def test_the_specs_penalty_flags_leave_a_term_out():
    p, mask = params(), decay_mask(params())
    hp = make_hp(l2=0.2, l1=0.3)
    sq, ab = (W**2).sum(), np.abs(W).sum()
    assert float(penalty(p, mask, hp)) == pytest.approx(0.1 * sq + 0.3 * ab, rel=1e-6)
    assert float(penalty(p, mask, hp, l1=False)) == pytest.approx(0.1 * sq, rel=1e-6)
    assert float(penalty(p, mask, hp, l2=False)) == pytest.approx(0.3 * ab, rel=1e-6)
    assert float(penalty(p, mask, hp, l1=False, l2=False)) == 0.0
    # the spec sets them from the config: a penalty whose rate is 0 is not in the program
    from conftest import compose

    from runner.config import validate
    from runner.core.spec import make_spec as spec_of
    from runner.data import load_dataset

    for over, flags in (
        ([], (False, False)),
        (["regularization=l2"], (False, True)),
        (["regularization=l1"], (True, False)),
    ):
        cfg = validate(compose(["data=iris", *over]))
        s = spec_of(cfg, load_dataset(cfg.data)).optim
        assert (s.l1, s.l2) == flags, over
