"""Vectorised trials: runs that share their structure train as one jax.vmap-ed program.

Two runs share structure when they have the same Spec (architecture, widths, activation,
initializer, optimizer and schedule families, batch size, data shapes) and the same data: they
then differ only in numbers (learning rate, weight decay, momentum, dropout rate, seed, ...),
which the core takes as traced hyperparameters, so one compiled program can carry a stacked
"member" axis of parameters, optimizer states and RNG streams. Each member keeps its own
runner.tracker.Tracker: divergence, early stopping and the best epoch are decided per member
exactly as in a run alone; a member that is done is frozen by masking while the others go on.

The launcher plugin (hydra_plugins/runner_launcher) groups a batch of Hydra jobs with
`plan_groups` and trains each group with `fit_group`; every job then writes its own run
directory as if it had trained alone.
"""

from __future__ import annotations

import time
import weakref

import jax
import numpy as np

from runner import stop
from runner.config import Config, record
from runner.core import layerstats as diag
from runner.core import train
from runner.core.spec import TRAINING_ONLY, make_hparams, make_spec
from runner.core.state import TrainState
from runner.data import Dataset, overfit_subset
from runner.tracker import (
    STOP_AT,
    Result,
    Tracker,
    Warnings,
    check_initial_loss,
    resolve_monitor,
)

INT32 = 2**31
# A CPU works on every member's parameters and optimizer state at each step: once a group's
# states outgrow the caches it trains slower per member (docs/performance.md). So a group
# carries at most this many bytes of training state per CPU device; on an accelerator, where
# width is what is cheap, max_members decides alone.
CPU_STATE_BYTES = 4 * 2**20


def group_key(cfg: Config, ds: Dataset):
    """What must be equal for two runs to share one vmapped program (None: this run trains
    alone: k-fold cross-validation runs its folds one by one, and seeds must fit in int32)."""
    if cfg.trainer.cv_folds >= 2 or not -INT32 <= cfg.seed < INT32:
        return None
    fit_ds = overfit_subset(cfg, ds) if cfg.trainer.overfit_batches else ds
    spec = make_spec(cfg, fit_ds)
    shapes = tuple((k, np.shape(v)) for k, v in sorted(make_hparams(cfg, spec).items()))
    return (repr(cfg.data), cfg.trainer.overfit_batches, spec, shapes)


def state_bytes(cfg: Config, ds: Dataset) -> int:
    """Bytes of one run's training state (parameters, batch-norm statistics, optimizer state),
    counted in pure Python from the config (runner.memory; tests/test_bad_input.py checks the
    count against jax.eval_shape of the real state). Tracing the model's initialisation for it
    cost a sweep ~0.2 s of its planning, flax's import included."""
    from runner import memory

    spec = make_spec(cfg, ds)
    return memory.state_bytes(
        spec.model, spec.input_shape, cfg.optimizer.name, cfg.optimizer.centered
    )


def group_size(cfg: Config, ds: Dataset, max_members: int) -> int:
    """The most runs of cfg's structure that one vmapped program should carry."""
    devices = jax.local_devices()
    if devices[0].platform != "cpu":
        return max(1, max_members)
    per_device = max(1, CPU_STATE_BYTES // max(1, state_bytes(cfg, ds)))
    return max(1, min(max_members, per_device * len(devices)))


def plan_groups(keys: list) -> list[list[int]]:
    """Indices of the runs, grouped by equal key in order of first appearance; a run whose key
    is None is a group of its own."""
    groups: dict = {}
    out: list[list[int]] = []
    for i, k in enumerate(keys):
        if k is None:
            out.append([i])
        elif k in groups:
            groups[k].append(i)
        else:
            groups[k] = [i]
            out.append(groups[k])
    return out


def padded_size(n: int, limit: int) -> int:
    """The member count a group of n is padded to: the next power of two, at most `limit` (the
    group size cap, when it is >= n). A sweep whose groups shrink from rung to rung (trials cut,
    survivors continued) then compiles one program per power of two, not one per count."""
    p = 1 << max(0, n - 1).bit_length()
    return max(n, min(p, limit))


def _restore_members(
    states: TrainState, resumes: list
) -> tuple[TrainState, TrainState, np.ndarray]:
    """(states, best states, same) on the host, stacked: member i of `states` replaced by its
    checkpoint's state (and best weights) where resumes[i] is an app.Resume, as app.fit
    restores a run alone; same[i]: member i's best state is bit for bit its state."""
    from runner.checkpoint import restore_state

    host = jax.device_get(states)
    leaves, treedef = jax.tree_util.tree_flatten(host)
    cur, best = [np.array(a) for a in leaves], [np.array(a) for a in leaves]
    for i, r in enumerate(resumes):
        if r is None:
            continue
        s_i, b_i = restore_state(
            r.arrays, r.path, jax.tree_util.tree_map(lambda a, i=i: a[i], host), place=False
        )
        for dst, tree in ((cur, s_i), (best, b_i)):
            for a, b in zip(dst, jax.tree_util.tree_leaves(tree)):
                a[i] = b
    # array_equal: a NaN makes them differ, which only costs an evaluation
    same = np.array(
        [all(np.array_equal(a[i], b[i]) for a, b in zip(cur, best)) for i in range(len(resumes))]
    )
    return treedef.unflatten(cur), treedef.unflatten(best), same


# The untrained members' numbers (the initial evaluation), per dataset object (held weakly: a
# new dataset, even of the same config, is evaluated again), by what decides them: the spec,
# the seed and the hyperparameters that the initial weights or an evaluation read. A sweep's
# groups whose trials differ only in how they train (S64's space: lr and weight decay, one
# seed) share them: one evaluation serves every group (~65 ms a W1 group of 8).
_INITIAL: dict[int, tuple] = {}
INITIAL_KEPT = 4096  # members' numbers kept per dataset, a few hundred bytes each


def _initial_key(spec, seed: int, hp: dict) -> tuple:
    return (
        spec,
        seed,
        tuple((k, v.tobytes()) for k, v in sorted(hp.items()) if k not in TRAINING_ONLY),
    )


def _initial_numbers(ds: Dataset, keys: list, evaluate) -> list:
    """Each member's numbers before training, as _member gives them (keys[i] None: a continued
    member, which needs none); evaluate(): the group's evaluation on the host, run only when a
    member's key is new, and then every member gets this evaluation's numbers."""
    entry = _INITIAL.get(id(ds))
    if entry is None or entry[0]() is not ds:
        for k in [k for k, (ref, _) in _INITIAL.items() if ref() is None]:
            del _INITIAL[k]
        entry = _INITIAL[id(ds)] = (weakref.ref(ds), {})
    known = entry[1]
    if any(k is not None and k not in known for k in keys):
        host = evaluate()
        if len(known) + len(keys) > INITIAL_KEPT:
            known.clear()
        for i, k in enumerate(keys):
            if k is not None:
                known[k] = _member(host, i)
    return [None if k is None else dict(known[k]) for k in keys]


def _member(tree, i: int) -> dict:
    """Member i of the host copy of a stacked metrics dict, in fit's per-run form."""
    return {
        k: (jax.tree_util.tree_map(lambda a: a[i], v) if isinstance(v, dict) else float(v[i]))
        for k, v in tree.items()
    }


def _placement(n: int):
    """(put, n_pad): put(tree, replicate=False) places arrays with their leading member axis
    split over the local devices (or copies them to each: replicate); n_pad is n rounded up to
    a multiple of the devices used. One device: plain device arrays."""
    devices = jax.local_devices()[:n]
    if len(devices) < 2:
        return (lambda tree, replicate=False: jax.device_put(tree)), n  # see app.prepare
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(devices), ("member",))
    split, same = NamedSharding(mesh, PartitionSpec("member")), NamedSharding(mesh, PartitionSpec())

    def put(tree, replicate=False):
        return jax.device_put(tree, same if replicate else split)

    return put, -(-n // len(devices)) * len(devices)


def fit_group(
    cfgs: list[Config],
    ds: Dataset,
    *,
    on_start=None,
    on_epoch=None,
    on_warn=None,
    on_checkpoint=None,
    on_dispatch=None,
    pad_to: int = 0,
    resumes: list | None = None,
) -> list[Result]:
    """Train runs of one structure (see group_key) together; return their Results, each equal
    (within float tolerance) to what runner.app.fit returns for that config alone.

    on_start(spec, n_params, compile_time, n_members); on_epoch(step, n_active, rows): the
    group's step-th epoch, rows {member: curve row} (each row has the member's own epoch);
    on_warn(member, message); on_checkpoint(member, state, best, meta) as app.fit's, when
    trainer.stop_at stops a member. on_dispatch(): called once, as soon as the first epoch is
    dispatched: host work done there overlaps that epoch's computation (the launcher writes
    the previous group's folders). pad_to: carry at least this many members (inactive copies
    fill up), so that groups of nearly equal size share one program (padded_size). resumes:
    one app.Resume or None per member: that member continues its checkpoint, as app.fit(...,
    resume=) does, from its own epoch; each member trains up to its trainer.stop_at (or
    trainer.epochs)."""
    n = len(cfgs)
    resumes = list(resumes) if resumes is not None else [None] * n
    first = cfgs[0]
    if first.trainer.overfit_batches:
        ds = overfit_subset(first, ds)
    spec = make_spec(first, ds)
    for c in cfgs:
        resolve_monitor(c, spec, ds)  # a bad monitor fails before compiling
    # The member axis is sharded over the local devices (on a CPU: one per core, see
    # runtime.host_devices), padded to a multiple of their count with copies of member 0 that
    # never train (inactive from the start).
    put, n_pad = _placement(max(n, pad_to))
    each = [make_hparams(c, spec) for c in cfgs]
    each += each[:1] * (n_pad - n)
    hps = put({k: np.stack([h[k] for h in each]) for k in each[0]})
    seeds = put(np.array([c.seed for c in cfgs] + [cfgs[0].seed] * (n_pad - n), np.int32))
    data = put(ds.arrays(), replicate=True)
    warns = [Warnings((lambda m, i=i: on_warn(i, m)) if on_warn else None) for i in range(n)]
    t_start = time.perf_counter()

    programs = train.PROGRAMS
    init_exe, c_init = programs.get(train.init_states, spec, hps, seeds, data)
    # Split over the devices whatever layout XLA chose for init's outputs: the programs below
    # are compiled for (and keep) member-split states.
    states: TrainState = put(init_exe(hps, seeds, data))
    active = np.arange(n_pad) < n
    epoch_exe, c_epoch = programs.get(train.epochs_masked, spec, states, data, hps, put(active))
    eval_exe, c_eval = programs.get(train.evaluate_members, spec, states, data, hps)
    select_exe, c_sel = programs.get(train.select_members, spec, put(active), states, states)
    compile_time = c_init + c_epoch + c_eval + c_sel
    # The untrained members' numbers (host sync): the 3x-abort references. A continued member
    # has its own in its checkpoint's bookkeeping, so an all-continued group needs none.
    initials = _initial_numbers(
        ds,
        [
            None if r is not None else _initial_key(spec, c.seed, h)
            for c, h, r in zip(cfgs, each, resumes)
        ],
        lambda: jax.device_get(eval_exe(states, data, hps)),
    )
    # From the stacked shapes: slicing member 0 out of device arrays would dispatch (and
    # compile, once per shape) a gather per leaf, ~0.15 s of a sweep's first group.
    names = diag.layer_names(states.params)
    n_params = int(sum(np.prod(np.shape(p)[1:]) for p in jax.tree_util.tree_leaves(states.params)))
    trackers = []
    for i, c in enumerate(cfgs):
        if resumes[i] is not None:  # its bookkeeping so far, as app.fit's resume
            book = resumes[i].meta["tracker"]
            trackers.append(Tracker(c, spec, ds, book["initial"], names, warns[i]))
            trackers[-1].load(book)
            continue
        initial = initials[i]
        diag0 = initial.pop("diag", None)  # with diagnostics on: epoch 0's activation pass
        check_initial_loss(spec, initial, warns[i])
        trackers.append(Tracker(c, spec, ds, initial, names, warns[i]))
        if diag0 is not None:
            trackers[-1].initial_diagnostics(diag0)
    best = states
    # same[i]: member i's best state is bit for bit its current one (it improved at its last
    # trained epoch), so one evaluation gives both its best and its final numbers.
    same = np.ones(n_pad, bool)
    # Each member's epochs: from after its checkpoint's epoch to its stop_at (or epochs); the
    # schedule's step and the RNG travel in its state, so only the host counts epochs.
    start = np.array([r.meta["epoch"] if r else 0 for r in resumes] + [0] * (n_pad - n))
    last = np.array([c.trainer.stop_at or c.trainer.epochs for c in cfgs] + [0] * (n_pad - n))
    prev = [r.meta if r else {} for r in resumes]
    if any(r is not None for r in resumes):
        host, host_best, same = _restore_members(states, resumes + [None] * (n_pad - n))
        states, best = put(host), put(host_best)
        active &= start < last
        for i in np.flatnonzero((start >= last)[:n]):  # continued to the stop it had reached
            if start[i] < cfgs[i].trainer.epochs:
                trackers[i].prune(STOP_AT)
    if on_start:
        on_start(spec, n_params, compile_time, n)

    def checkpoint(i: int, host) -> None:
        state_i, best_i = jax.tree_util.tree_map(lambda a: a[i], host)
        p = prev[i]
        on_checkpoint(
            int(i),
            state_i,
            best_i.weights() if trackers[i].best_epoch else None,
            {
                "epoch": len(trackers[i].history),
                "train_time": p.get("train_time", 0.0) + float(own[i]),
                "wall_time": p.get("wall_time", 0.0) + float(own[i]) + (t_train - t_start) / n,
                "compile_time": p.get("compile_time", 0.0) + compile_time / n,
                "tracker": trackers[i].bookkeeping(),
                "config": record(cfgs[i]),
            },
        )

    def final_evaluations() -> tuple:
        """The evaluations of the final and best states, dispatched, not fetched: the final
        one, and the best states' where some member's best epoch is not its last (else None: one
        evaluation serves both when every member that has both keeps its final state as its
        best, as app.fit's `state is best_state`; under vmap a member's numbers are its own)."""
        both = [i for i, tr in enumerate(trackers) if tr.best_epoch and tr.history]
        ev_final = eval_exe(states, data, hps)
        return ev_final, None if same[both].all() else eval_exe(best, data, hps)

    pending: tuple | None = None
    # A member's own training time: each epoch's time split evenly among the members active in
    # it, summed over the epochs it was active (a member that stopped early costs the group
    # nothing after its last epoch). The shares add up to the group's train_time.
    own = np.zeros(n)
    lent = 0.0  # spent in on_dispatch
    t_train = mark = time.perf_counter()
    try:
        for step in range(1, int(max(last - start)) + 1):
            if stop.requested() or not active.any():
                break
            new_states, m = epoch_exe(states, data, hps, put(active))
            if on_dispatch is not None and step == 1:
                t_lent = time.perf_counter()
                try:
                    on_dispatch()
                finally:  # the caller's time, no member's
                    lent = time.perf_counter() - t_lent
                    mark += lent
            m = jax.device_get(m)  # host sync point: one per epoch for the whole group
            with stop.shielded():  # the states and the trackers move on together
                states = new_states
                now = time.perf_counter()
                ran = np.flatnonzero(active)
                own[ran] += (now - mark) / len(ran)
                mark = now
                improved = np.zeros(n_pad, bool)
                rows = {}
                for i in ran:
                    ep = int(start[i]) + step
                    row, improved[i], done = trackers[i].update(ep, _member(m, i), float(own[i]))
                    rows[int(i)] = row
                    if done:
                        active[i] = False
                if improved.any():
                    best = select_exe(put(improved), states, best)
                same[ran] = improved[ran]
                # trainer.stop_at's stop always leaves a checkpoint
                save = [i for i in ran if not active[i] and trackers[i].reason == STOP_AT]
                if on_checkpoint and save:
                    if not active.any():  # the last epoch (a rung's end): no state moves
                        # after it, so the evaluations compute while the host writes the
                        # checkpoints (~8 ms a member) instead of after
                        pending = final_evaluations()
                    host = jax.device_get((states, best))
                    for i in save:
                        checkpoint(i, host)
            if on_epoch:
                on_epoch(step, int(active.sum()), rows)
    except KeyboardInterrupt:
        stop.note_interrupt()
    for i in np.flatnonzero(active[:n]):  # members a stop caught before they were done
        trackers[i].interrupt(stop.signal_name())
    # As app.fit: a stopped member keeps what it trained since its start, for trainer.resume.
    caught = [i for i in np.flatnonzero(active[:n]) if len(trackers[i].history) > start[i]]
    if on_checkpoint and caught:
        with stop.shielded():
            host = jax.device_get((states, best))
            for i in caught:
                checkpoint(i, host)
    train_time = time.perf_counter() - t_train - lent
    # What no epoch accounts for (the display, the stop bookkeeping): shared like the epochs.
    share = own / own.sum() if own.sum() > 0 else np.full(n, 1 / n)
    own += (train_time - own.sum()) * share

    # The test numbers of each member's best epoch's weights and of its final ones (dispatched
    # already where the last epoch wrote checkpoints).
    ev_final, ev_best = pending or final_evaluations()
    ev_final_all = jax.device_get(ev_final)
    ev_all = ev_final_all if ev_best is None else jax.device_get(ev_best)
    best_host: TrainState = jax.device_get(best)
    wall = time.perf_counter() - t_start - lent
    # A member's times are its own share (train: by the epochs it was active; compile and the
    # rest: evenly); metrics.json's "vectorized" keeps the group's totals (docs/sweeps.md).
    rest = (wall - train_time) / n
    group = {
        "members": n,
        "wall_time": wall,
        "train_time": train_time,
        "compile_time": compile_time,
    }
    results = []
    for i, tr in enumerate(trackers):
        ev = _member(ev_all, i) if tr.best_epoch else {}
        ev_final = _member(ev_final_all, i) if tr.history else {}
        best_i = jax.tree_util.tree_map(lambda a, i=i: a[i], best_host) if tr.best_epoch else None
        p = prev[i]  # a continued member's times before this group count towards its totals
        extra = {"vectorized": dict(group, member=i)}
        if resumes[i] is not None:
            extra["resumed_from_epoch"] = p["epoch"]
        results.append(
            tr.result(
                ds,
                ev,
                best_i,
                n_params=n_params,
                times={
                    "wall_time": p.get("wall_time", 0.0) + float(rest + own[i]),
                    "train_time": p.get("train_time", 0.0) + float(own[i]),
                    "compile_time": p.get("compile_time", 0.0) + compile_time / n,
                },
                extra=extra,
                ev_final=ev_final,
            )
        )
    return results
