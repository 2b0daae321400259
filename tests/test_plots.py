"""curves.png, diagnostics.png and a sweep's topk.png, checked by reading the PNGs back: the
description save_png writes into each (runner.plots.read_description: scales, panels, ticks,
lines, legends) and the pixels (PIL), on rows built here (no training)."""

from __future__ import annotations

import io
import math
import sys

import pytest
from PIL import Image

from runner import plots, rundir

PNG = b"\x89PNG\r\n\x1a\n"
LAYERS = ["layer0", "layer1", "layer2", "head"]


def curve_rows(n=20, lo=1e-3, lr=True):
    """n epochs of a loss falling from ~2.3 to `lo` (train) and a validation loss that turns up
    after epoch 12; lr halves every 4 epochs (0.1 -> 0.003: spans >10x)."""
    rows = []
    for e in range(1, n + 1):
        row = {
            "epoch": e,
            "step": 10 * e,
            "train_loss": 2.3 * (lo / 2.3) ** (e / n),
            "train_acc": 1 - 0.6 * 0.8**e,
            "val_loss": 0.3 + 0.002 * (e - 12) ** 2,
            "val_acc": 0.9 - 0.5 * 0.8**e,
            "time": 0.1 * e,
        }
        if lr:
            row["lr"] = 0.1 * 0.5 ** ((e - 1) // 4)
        rows.append(row)
    return rows


METRICS = {
    "best_epoch": 12,
    "initial_train_loss": 2.4,
    "initial_val_loss": 2.45,
    "initial_loss_expected": math.log(10),
}


def panel(desc, title):
    got = [p for p in desc["panels"] if p["title"].startswith(title)]
    assert len(got) == 1, [p["title"] for p in desc["panels"]]
    return got[0]


def line(p, label):
    got = [x for x in p["lines"] if x["label"] == label]
    assert len(got) == 1, [x["label"] for x in p["lines"]]
    return got[0]


def integer_ticks(p):
    assert p["xticks"], p["title"]
    return [int(t) for t in p["xticks"]]  # "2.5" raises


def colour_pixels(path, hex_colour, tol=40):
    """How many pixels of the PNG are within `tol` (per channel) of `hex_colour`."""
    want = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
    with Image.open(path) as img:
        colours = img.convert("RGB").getcolors(1 << 24)
    return sum(n for n, px in colours if all(abs(c - w) <= tol for c, w in zip(px, want)))


def read_png(path):
    blob = path.read_bytes()
    assert blob[:8] == PNG
    desc = plots.read_description(path)
    with Image.open(io.BytesIO(blob)) as img:
        img.load()  # a truncated file raises here
        assert list(img.size) == desc["size"]
        assert len(img.convert("RGB").getcolors(1 << 16) or range(99999)) > 20  # not blank
    return desc


def test_curves_png_shows_epoch_0_best_epoch_log_loss_and_lr(tmp_path):
    rows, out = curve_rows(), tmp_path / "curves.png"
    plots.plot_curves(rows, "acc", out, title="optimizer=sgd", metrics=METRICS)
    d = read_png(out)
    assert d["size"] == [1230, 440] and d["title"] == "optimizer=sgd"
    assert [p["title"] for p in d["panels"]] == ["loss", "accuracy", "learning rate"]
    loss, acc, lr = d["panels"]
    # the loss falls 2.4 -> 1e-3: log; accuracy stays linear; lr 0.1 -> 0.0031: log
    assert (loss["yscale"], acc["yscale"], lr["yscale"]) == ("log", "linear", "log")
    for p in d["panels"]:
        assert p["xlabel"] == "epoch" and p["xscale"] == "linear"
        ticks = integer_ticks(p)
        assert ticks[0] == 0 and ticks[-1] >= 20
        # the best epoch: a dashed vertical line at x=12 on every panel
        best = [x for x in p["lines"] if x["x"] == [12, 12] and x["linestyle"] == "--"]
        assert len(best) == 1 and best[0]["color"] == plots.BEST_COLOUR
    assert line(loss, "best epoch (12)")
    # epoch 0: the untrained network's losses, from metrics.json
    train, val = line(loss, "train"), line(loss, "validation")
    assert train["x"] == list(range(21)) and train["y"][0] == 2.4
    assert val["y"][0] == 2.45 and val["y"][1:] == pytest.approx([r["val_loss"] for r in rows])
    star = [x for x in loss["lines"] if x["marker"] == "*"]
    assert star and star[0]["x"] == [12] and star[0]["y"][0] == pytest.approx(rows[11]["val_loss"])
    assert line(lr, "lr (used in the epoch)")["y"] == pytest.approx([r["lr"] for r in rows])
    assert line(loss, "ln C = 2.303")["y"] == [pytest.approx(math.log(10), rel=1e-5)] * 2
    (legend,) = d["legends"]
    assert legend["owner"] == "figure" and not legend["covers_data"]
    assert legend["labels"] == [
        "train",
        "validation",
        "ln C = 2.303",
        "best epoch (12)",
        "lr (used in the epoch)",
    ]
    assert colour_pixels(out, plots.BEST_COLOUR) > 300  # the marker is drawn, not only described


def test_curves_png_linear_without_lr_or_metrics(tmp_path):
    # a loss within 10x, an old curves.csv without lr, no metrics.json: no lr panel, no marker,
    # epochs from 1; the missing metric column (regression) leaves its panel out
    rows = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e} for e in range(1, 6)]
    out = tmp_path / "c.png"
    plots.plot_curves(rows, "rmse", out)
    d = read_png(out)
    assert [p["title"] for p in d["panels"]] == ["loss"] and d["title"] == ""
    (loss,) = d["panels"]
    assert loss["yscale"] == "linear" and line(loss, "train")["x"] == [1, 2, 3, 4, 5]
    assert all(t >= 0 for t in integer_ticks(loss))
    assert not any(x["x"] == [0] or x["label"].startswith("best") for x in loss["lines"])
    assert colour_pixels(out, plots.BEST_COLOUR, tol=10) == 0


def test_curves_png_of_a_diverged_run(tmp_path):
    # the loss is NaN from the diverged epoch on: a line marks it; 25000 untrained vs ln C: log
    rows = [{"epoch": e, "train_loss": 9e3 if e < 3 else math.nan, "lr": 1e6} for e in (1, 2, 3)]
    metrics = {"initial_train_loss": 2.5e4, "initial_loss_expected": 2.3, "diverged_epoch": 3}
    plots.plot_curves(rows, "acc", tmp_path / "c.png", metrics=metrics)
    d = read_png(tmp_path / "c.png")
    loss, lr = d["panels"]
    assert loss["yscale"] == "log" and line(loss, "train")["y"] == [2.5e4, 9e3, 9e3, None]
    assert line(loss, "diverged (epoch 3)")["x"] == [3, 3]
    assert lr["yscale"] == "linear" and lr["ylim"][0] == 0  # a constant rate, from 0


@pytest.mark.parametrize(
    "values,log",
    [
        ([1.0, 10.0], False),  # exactly 10x: linear
        ([1.0, 10.5], True),
        ([0.0, 1.0, 100.0], False),  # a 0 cannot go on a log axis
        ([2.0, math.nan, math.inf, 0.1], True),  # non-finite values are left out
        ([math.nan], False),
    ],
)
def test_log_scale_if_wide(values, log):
    plt = plots.pyplot()
    fig, ax = plt.subplots()
    assert plots.log_scale_if_wide(ax, values) is log
    assert ax.get_yscale() == ("log" if log else "linear")
    plt.close(fig)


def test_a_legend_over_the_data_is_reported():
    # the check the pictures rely on can fail: a legend in the middle of a diagonal line
    plt = plots.pyplot()
    for loc, covers in (("center", True), ("outside right upper", False)):
        fig, ax = plt.subplots(layout="constrained")
        ax.plot(range(10), range(10), label="diagonal")
        (fig.legend if loc.startswith("outside") else ax.legend)(loc=loc)
        fig.canvas.draw()
        assert [g["covers_data"] for g in plots.describe(fig)["legends"]] == [covers]
        plt.close(fig)


def diag_rows(epochs=4, act=(5e-4, 1e-5, 4e-7), extra=None):
    """diagnostics.csv rows with an epoch-0 row (no gradient yet: NaN), tiny activation stds
    (normal(0.01) init in a deep net) and the head without activations."""
    rows = []
    for e in range(epochs + 1):
        for i, layer in enumerate(LAYERS):
            head = layer == "head"
            rows.append(
                {
                    "epoch": e,
                    "layer": layer,
                    "weight_norm": 1.0,
                    "grad_norm": math.nan if e == 0 else 10.0 ** (i - 6),
                    "update_ratio": math.nan if e == 0 else 1e-3 * 3**i,
                    "act_mean": math.nan if head else 0.0,
                    "act_std": math.nan if head else act[i],
                    "dead_frac": math.nan if head else 0.1 * i,
                    "saturated_frac": math.nan if head else 0.0,
                    **(extra or {}),
                }
            )
    return rows


def test_diagnostics_png_log_std_ratio_and_dead_panels(tmp_path):
    out = tmp_path / "diagnostics.png"
    plots.plot_diagnostics(diag_rows(extra={"identical_frac": 0.0}), out, title="t")
    d = read_png(out)
    assert d["size"] == [1100, 700]
    grad, ratio = panel(d, "gradient norm"), panel(d, "update/weight ratio")
    std, dead = panel(d, "activation std"), panel(d, "dead-unit fraction")
    assert [p["yscale"] for p in (grad, ratio, std, dead)] == ["log", "log", "log", "linear"]
    # 5e-4 .. 4e-7 are decades apart on the axis, not all at 0
    assert std["ylim"][0] < 4e-7 and 5e-4 < std["ylim"][1] < 1e-2
    assert [x["label"] for x in std["lines"]] == LAYERS[:3]  # the head has no activation
    assert line(std, "layer2")["x"] == [0, 1, 2, 3, 4]
    g0 = line(grad, "layer0")
    assert g0["x"][0] == 0 and g0["y"][0] is None and g0["y"][1] == pytest.approx(1e-6)
    assert [x["label"] for x in grad["lines"]] == LAYERS
    assert any(x["y"] == [1e-3, 1e-3] for x in ratio["lines"])  # the ~1e-3 reference
    assert dead["ylim"][0] < 0 and dead["ylim"][1] > 1
    assert all(x["linestyle"] == "-" for x in dead["lines"])  # no saturation: no dashed lines
    for p in (grad, ratio, std, dead):
        assert integer_ticks(p)[0] == 0 and p["xlabel"] == "epoch"
    (legend,) = d["legends"]
    assert legend["owner"] == "figure" and legend["labels"] == LAYERS
    assert not legend["covers_data"]


def test_diagnostics_png_saturation_dashed_when_no_relu(tmp_path):
    rows = diag_rows(epochs=2)
    for r in rows:
        if r["layer"] != "head":
            r["dead_frac"], r["saturated_frac"] = math.nan, 0.4
    out = tmp_path / "d.png"
    plots.plot_diagnostics(rows, out)
    dead = panel(read_png(out), "dead-unit fraction")
    assert "saturated: dashed" in dead["title"]
    assert {x["linestyle"] for x in dead["lines"]} == {"--"} and len(dead["lines"]) == 3


def write_trial(d, epochs, final_loss, initial=2.3):
    d.mkdir(parents=True)
    rows = [
        {
            "epoch": e,
            "train_loss": final_loss,
            "val_loss": initial * (final_loss / initial) ** (e / epochs),
            "val_acc": 1 - final_loss,
        }
        for e in range(1, epochs + 1)
    ]
    rundir.write_rows(d / rundir.CURVES, rows, list(rows[0]))
    rundir.write_json(d / rundir.METRICS, {"status": "completed", "initial_val_loss": initial})


def test_topk_png_log_loss_and_coarse_to_fine_stages(tmp_path):
    from runner.sweep.report import plot_topk

    trials = []
    for job, (stage, epochs, loss) in enumerate(
        [(1, 2, 0.5), (1, 2, 0.4), (1, 2, 0.6), (2, 5, 0.05), (2, 5, 0.08), (2, 5, 0.2)]
    ):
        write_trial(tmp_path / str(job), epochs, loss)
        trials.append(
            {
                "job": job,
                "stage": stage,
                "status": "completed",
                "objective": 1 - loss,
                "params": {"optimizer.lr": 10.0**-job},
                "dir": str(tmp_path / str(job)),
            }
        )
    summ = {"trials": trials, "mode": "max", "monitor": "val_acc"}
    assert plot_topk(tmp_path, summ, 2)
    d = read_png(tmp_path / "topk.png")
    assert d["title"] == "top 2 completed trials of each of 2 stages by val_acc (max)"
    loss = panel(d, "validation loss")
    assert loss["yscale"] == "log"  # 2.3 -> 0.05
    # the best 2 of each stage, told apart by line style and by the legend
    styles = {x["label"]: x["linestyle"] for x in loss["lines"]}
    assert list(styles) == [
        "stage 1, job 1: lr=0.1",
        "stage 1, job 0: lr=1",
        "stage 2, job 3: lr=0.001",
        "stage 2, job 4: lr=0.0001",
    ]
    assert list(styles.values()) == ["--", "--", "-", "-"]
    assert line(loss, "stage 2, job 3: lr=0.001")["x"] == [0, 1, 2, 3, 4, 5]  # from epoch 0
    assert panel(d, "validation acc")["yscale"] == "linear"
    assert all(integer_ticks(p)[0] == 0 for p in d["panels"])
    (legend,) = d["legends"]
    assert legend["labels"] == list(styles) and not legend["covers_data"]

    # one stage: the top k overall, solid, no stage in the labels; the loss axis is log even
    # when the curves span under 10x (a sweep's top trials differ in decades)
    for t in trials:
        t["stage"] = 1
    summ["trials"] = [t for t in trials if t["job"] in (0, 1, 2)]
    for job in (0, 1, 2):
        rundir.write_json(tmp_path / str(job) / rundir.METRICS, {"status": "completed"})
    assert plot_topk(tmp_path, summ, 2)
    d = plots.read_description(tmp_path / "topk.png")
    loss = panel(d, "validation loss")
    assert d["title"] == "top 2 trials by val_acc (max)" and loss["yscale"] == "log"
    assert [x["label"] for x in loss["lines"]] == ["job 1: lr=0.1", "job 0: lr=1"]
    assert {x["linestyle"] for x in loss["lines"]} == {"-"}
    assert line(loss, "job 1: lr=0.1")["x"] == [1, 2]  # no metrics.json start: from epoch 1


def test_write_run_and_runner_plot_draw_from_the_runs_metrics(tmp_path):
    """The run's own callers pass metrics.json: write_run (after training) and `runner plot`."""
    from runner.app import write_run
    from runner.compare.main import main
    from runner.tracker import Result

    metrics = {"status": "completed", "metric": "acc", "monitor": "val_acc", **METRICS}
    result = Result("completed", metrics, history=curve_rows(), diagnostics=diag_rows())
    write_run(tmp_path, result, title="x")
    (tmp_path / rundir.HYDRA_DIR).mkdir()  # what makes a folder a run for `runner plot`
    for name in ("curves.png", "diagnostics.png"):
        (tmp_path / name).rename(tmp_path / f"first_{name}")
    old = sys.stdout
    sys.stdout = io.StringIO()
    try:
        assert main(["plot", str(tmp_path)]) == 0
    finally:
        sys.stdout = old
    for prefix in ("first_", ""):
        d = read_png(tmp_path / f"{prefix}curves.png")
        loss = panel(d, "loss")
        assert loss["yscale"] == "log" and line(loss, "best epoch (12)")["x"] == [12, 12]
        assert line(loss, "validation")["y"][0] == 2.45
        assert panel(d, "learning rate")["yscale"] == "log"
        d = read_png(tmp_path / f"{prefix}diagnostics.png")
        assert panel(d, "activation std")["yscale"] == "log"
        assert line(panel(d, "activation std"), "layer0")["x"][0] == 0


def test_description_of_any_png(tmp_path):
    # a PNG not written by save_png has none; a long trace is described by its length only
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    assert plots.read_description(tmp_path / "plain.png") == {}
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(3, 2))
    n = plots.MAX_DESCRIBED + 1
    ax.plot(range(n), range(n), label="steps")
    ax.plot([1, 2], [3, math.nan], label="short")
    plots.save_png(fig, tmp_path / "t.png", tight=True)
    (p,) = read_png(tmp_path / "t.png")["panels"]
    long, short = p["lines"]
    assert long["n"] == n and "x" not in long
    assert short == {**short, "n": 2, "x": [1, 2], "y": [3, None]}
