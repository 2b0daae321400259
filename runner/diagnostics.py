"""Babysitting the learning process, host side: diagnostics.csv's rows from the numbers the
compiled epoch returns (runner/core/layerstats.py), and the warnings the course notes teach to
look for. Each warning names its cause before its advice: an update/weight ratio far from
~1e-3 is blamed on the learning rate only when neither identical (symmetric) units nor a
vanishing gradient explains it."""

from __future__ import annotations

import math

from runner.core.layerstats import FIELDS

RATIO_BAND = (1e-4, 1e-2)  # the update/weight ratio the notes aim at (~1e-3), give or take 10x
IDENTICAL = 0.5  # a layer with more of its units identical to another unit is symmetric
DEAD = 0.5  # a layer with more dead units than this
VANISHING = 1e-3  # first layer's gradient norm under this fraction of the head's
EXPLODING = 10.0  # a gradient norm growing this much in one epoch
# Weights growing without bound (the notes: "exponential growth in model parameters"): a layer's
# weight norm GROWTH_TOTAL times its first measured value (at initialization), or growing by
# more than GROWTH_RATE every epoch for GROWTH_EPOCHS epochs in a row. Hidden layers and skip
# projections only: the head starts small on purpose (init.head_scale) and grows ~10x in a
# healthy run.
GROWTH_TOTAL = 10.0
GROWTH_RATE = 0.25
GROWTH_EPOCHS = 5
# The train/validation gap at the end of training (final weights, evaluation mode). Accuracy:
# a big gap is over GAP_BIG; no gap is under GAP_NONE while the training accuracy is still under
# POOR_ACC. Regression (losses, MSE): big when val > GAP_BIG_RATIO x train; none when val <=
# GAP_NONE_RATIO x train while train is still over POOR_LOSS_FRACTION of the initial loss.
GAP_BIG = 0.10
GAP_NONE = 0.02
POOR_ACC = 0.90
GAP_BIG_RATIO = 2.0
GAP_NONE_RATIO = 1.1
POOR_LOSS_FRACTION = 0.25

SYMMETRY_ADVICE = (
    "initialize the weights randomly (init=auto, he_normal, glorot_uniform, ...) to break the "
    "symmetry; biases may start at 0"
)
VANISHING_ADVICE = (
    "use an activation that does not saturate (relu family) instead of sigmoid/tanh, a "
    "variance-preserving init (he_normal for relu, glorot for tanh), batch norm "
    "(regularization=batchnorm) or residual connections (model=resmlp)"
)


def rows(epoch: int, names, diag: dict) -> list[dict]:
    """Host-side rows of diagnostics.csv for one epoch (a field the pass did not compute, as
    the gradient at epoch 0: NaN)."""
    return [
        {
            "epoch": epoch,
            "layer": name,
            **{k: float(diag[k][i]) if k in diag else math.nan for k in FIELDS[2:]},
        }
        for i, name in enumerate(names)
    ]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _hidden(name: str) -> bool:
    return name.startswith("layer")


class Watcher:
    """Turns per-epoch rows into the notes' warnings: each kind once per run, naming the layers
    (and values) that triggered it. Epoch 0 (the untrained network, no gradient yet) checks
    only what its rows hold: identical units."""

    def __init__(self, warn):
        self.warn = warn
        self.seen: set = set()
        self.previous: dict = {}  # layer -> last finite gradient norm
        self.first_norm: dict = {}  # layer -> [epoch, weight norm] of its first row
        self.last_norm: dict = {}  # layer -> its previous weight norm
        self.streak: dict = {}  # layer -> epochs in a row its weight norm grew > GROWTH_RATE

    def state(self) -> dict:
        """What the watcher decides from, as JSON (a checkpoint's bookkeeping)."""
        return {
            "seen": sorted(self.seen),
            "previous": self.previous,
            "first_norm": self.first_norm,
            "last_norm": self.last_norm,
            "streak": self.streak,
        }

    def load(self, b: dict) -> None:
        self.seen = set(b["seen"])
        self.previous = dict(b["previous"])
        # checkpoints written before these existed: the growth check starts over
        self.first_norm = dict(b.get("first_norm", {}))
        self.last_norm = dict(b.get("last_norm", {}))
        self.streak = dict(b.get("streak", {}))

    def _once(self, kind, msg):
        if kind not in self.seen:
            self.seen.add(kind)
            self.warn(msg)

    def epoch(self, epoch: int, rows_: list[dict]) -> None:
        by = {r["layer"]: r for r in rows_}
        layers = [r["layer"] for r in rows_ if _hidden(r["layer"])]
        when = "at initialization (epoch 0)" if epoch == 0 else f"at epoch {epoch}"

        # 1. causes first: identical units, then a vanishing gradient
        identical = [
            (n, by[n]["identical_frac"])
            for n in layers
            if _finite(by[n].get("identical_frac")) and by[n]["identical_frac"] > IDENTICAL
        ]
        if identical:
            shown = ", ".join(f"{n} {100 * f:.0f}%" for n, f in identical)
            self._once(
                "identical",
                f"identical units {when}: {shown} of the units have the same weights and "
                f"bias as another unit, so they compute the same output, get the same "
                f"gradient and stay the same (zero or constant initialization: the symmetry "
                f"is never broken); {SYMMETRY_ADVICE}",
            )
        vanishing = False
        # Identical units explain a zero gradient too (an all-zero next layer passes none
        # back: the notes' "0 is bad b/c the gradient is 0 everywhere"): not a vanishing one.
        if layers and "head" in by and not identical:
            first, last = by[layers[0]].get("grad_norm"), by["head"].get("grad_norm")
            if _finite(first) and _finite(last) and last > 0 and first < VANISHING * last:
                vanishing = True
                self._once(
                    "vanishing",
                    f"vanishing gradients {when}: {layers[0]} gradient norm {first:.2e} is "
                    f"under {VANISHING:g} of the head's {last:.2e}, so the first layers barely "
                    f"learn; {VANISHING_ADVICE}",
                )

        exploding, dead, ratio, growing = [], [], [], []
        for r in rows_:
            name, g = r["layer"], r.get("grad_norm")
            prev = self.previous.get(name)
            if _finite(g):
                if prev and g > EXPLODING * prev:
                    exploding.append(f"{name} x{g / prev:.0f}")
                self.previous[name] = g
            if _finite(r.get("dead_frac")) and r["dead_frac"] > DEAD:
                dead.append(f"{name} {100 * r['dead_frac']:.0f}%")
            u = r.get("update_ratio")
            if _hidden(name) and _finite(u) and not RATIO_BAND[0] <= u <= RATIO_BAND[1]:
                ratio.append((name, u))
            if name != "head":  # init.head_scale starts the head 10x small on purpose
                growing += self._growth(epoch, name, r.get("weight_norm"))
        if exploding:
            self._once(
                "exploding",
                f"exploding gradients {when}: gradient norm grew over {EXPLODING:g}x in one "
                f"epoch in {', '.join(exploding)}; clip the gradients (regularization=clip) "
                f"or lower the learning rate",
            )
        if dead:
            self._once(
                "dead",
                f"dead units {when}: over half the units never activate on a batch in "
                f"{', '.join(dead)}",
            )
        if growing:
            self._once(
                "growing",
                f"weights growing without bound {when}: {', '.join(growing)} (the notes: "
                f"exponential growth in model parameters, a sign of exploding gradients); "
                f"penalize large weights (regularization.l2 or weight_decay), clip the "
                f"gradients (regularization=clip) or lower the learning rate",
            )
        if ratio:
            self._ratio(when, ratio, by, layers, identical, vanishing)

    def _growth(self, epoch: int, name: str, w) -> list[str]:
        """The layer's weight-norm growth, if it says 'without bound' (see GROWTH_*)."""
        if not _finite(w):
            return []
        out = []
        first = self.first_norm.setdefault(name, [epoch, w])
        if first[1] > 0 and w > GROWTH_TOTAL * first[1]:
            out.append(f"{name} norm x{w / first[1]:.0f} since epoch {first[0]}")
        last = self.last_norm.get(name)
        self.last_norm[name] = w
        if last is not None and last > 0 and w > (1 + GROWTH_RATE) * last:
            self.streak[name] = self.streak.get(name, 0) + 1
        else:
            self.streak[name] = 0
        if self.streak[name] >= GROWTH_EPOCHS and not out:
            out.append(
                f"{name} norm up over {100 * GROWTH_RATE:.0f}% every epoch for "
                f"{self.streak[name]} epochs (now {w:.3g})"
            )
        return out

    def _ratio(self, when, ratio, by, layers, identical, vanishing) -> None:
        high = any(u > RATIO_BAND[1] for _, u in ratio)
        shown = ", ".join(f"{n} {u:.1e}" for n, u in ratio[:4])
        more = f" and {len(ratio) - 4} more" if len(ratio) > 4 else ""
        head = (
            f"update/weight ratio far from ~1e-3 (outside [{RATIO_BAND[0]:g}, "
            f"{RATIO_BAND[1]:g}]) {when}: {shown}{more}"
        )
        low = [n for n, u in ratio if u < RATIO_BAND[0]]
        # The notes' sign of a vanishing gradient: the lower layers barely change while the
        # higher ones do. A low ratio only below a layer that does move is that, not the lr.
        moving = [n for n in layers if _finite(by[n].get("update_ratio"))][-1:]
        deeper_moves = bool(
            low
            and moving
            and moving[0] not in low
            and by[moving[0]]["update_ratio"] >= RATIO_BAND[0]
            and layers.index(low[-1]) < layers.index(moving[0])
        )
        if identical:
            names = [n for n, _ in identical]
            cause = (
                f"the cause is not the learning rate: {', '.join(names)} "
                f"{'has' if len(names) == 1 else 'have'} identical units, which any learning "
                f"rate moves together; {SYMMETRY_ADVICE}"
            )
        elif low and not high and (vanishing or deeper_moves):
            cause = (
                f"the cause is a vanishing gradient, not the learning rate: the lower layers "
                f"barely change while the higher ones do; {VANISHING_ADVICE}"
            )
        else:
            cause = f"learning rate too {'high' if high else 'low'}?"
        self._once("ratio", f"{head}; {cause}")


def gap_advice(metric: str, ev: dict, initial: dict, seen=()) -> str | None:
    """The notes' reading of the train/validation gap at the end of training (`ev`: the final
    weights evaluated in evaluation mode on train and validation): a big gap means
    overfitting (more regularization), no gap while the fit is still poor means too little
    capacity, unless a cause already warned of (`seen`: the Watcher's kinds, identical units
    or a vanishing gradient) explains the poor fit. None when neither holds or a number is
    missing."""
    big_only = bool({"identical", "vanishing"} & set(seen))
    tl, vl = ev.get("train_loss"), ev.get("val_loss")
    tm, vm = ev.get("train_metric"), ev.get("val_metric")
    if metric == "acc":
        if not (_finite(tm) and _finite(vm)):
            return None
        nums = f"train acc {tm:.3f}, validation acc {vm:.3f}"
        if tm - vm > GAP_BIG:
            return _big_gap(nums)
        if abs(tm - vm) < GAP_NONE and tm < POOR_ACC and not big_only:
            return _no_gap(nums)
        return None
    if not (_finite(tl) and _finite(vl)) or tl <= 0:
        return None
    nums = f"train loss {tl:.4g}, validation loss {vl:.4g}"
    if vl > GAP_BIG_RATIO * tl:
        return _big_gap(nums)
    start = initial.get("train_loss")
    if big_only:
        return None
    if vl <= GAP_NONE_RATIO * tl and _finite(start) and tl > POOR_LOSS_FRACTION * start:
        return _no_gap(nums)
    return None


def _big_gap(nums: str) -> str:
    return (
        f"big train/validation gap at the end of training ({nums}, final weights): "
        f"overfitting; increase the regularization strength (regularization.l2, "
        f"weight_decay, dropout) or stop early (regularization=early_stopping)"
    )


def _no_gap(nums: str) -> str:
    return (
        f"no train/validation gap at the end of training ({nums}, final weights) while the "
        f"model still fits the training set poorly: increase the model's capacity "
        f"(model.width, model.depth), or train longer"
    )
