"""A run folder as TensorBoard event files, written with tensorboardX (the `tensorboard` extra)
into RUN/<logger.tensorboard.dir> (default RUN/tensorboard):

    curves.csv's columns        train_loss, val_acc, lr, ...   step = epoch
    diagnostics.csv             diagnostics/LAYER/STAT          step = epoch
    metrics.json's numbers      final/KEY                       step = the last epoch
    the settings                HParams plugin: a session start info (hparams) and end info
                                (status), so a sweep's trials, each in its own run folder, are
                                one HParams table under `tensorboard --logdir SWEEP`

No experiment summary is written: TensorBoard then infers the table's columns from all the
sessions it finds, so trials with different option sets (optimizer=sgd,momentum) share one
table. Writing again replaces the folder (no doubled points), through a temporary folder so a
reader never sees half of one.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time

from runner.export import RunFiles, hparams, numbers, require

# The hparams plugin's status for each final run status.
STATUS = {
    "completed": "STATUS_SUCCESS",
    "diverged": "STATUS_FAILURE",
    "failed": "STATUS_FAILURE",
    # The plugin has no "aborted"; an interrupted run can still be resumed (and sent again).
    "interrupted": "STATUS_UNKNOWN",
}
SKIP_CURVES = ("epoch", "step")
DIAG_KEYS = ("epoch", "layer")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _session_end(status: str):
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    sei = SessionEndInfo(status=Status.Value(STATUS.get(status, "STATUS_UNKNOWN")))
    content = HParamsPluginData(session_end_info=sei, version=0)
    meta = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name="hparams", content=content.SerializeToString()
        )
    )
    return Summary(value=[Summary.Value(tag="_hparams_/session_end_info", metadata=meta)])


def _write_events(logdir: str, run: RunFiles) -> int:
    tbx = require("tensorboardX", "tensorboard")
    from tensorboardX.summary import hparams as hparams_summaries

    now = time.time()
    final = numbers(run.metrics)
    last = int(max((r.get("epoch", 0) for r in run.curves if _finite(r.get("epoch"))), default=0))
    n = 0
    with tbx.SummaryWriter(logdir=logdir, flush_secs=3600) as w:
        _, start, _ = hparams_summaries(hparams(run), {f"final/{k}": v for k, v in final.items()})
        w.file_writer.add_summary(start, walltime=now)
        for row in run.curves:
            if not _finite(row.get("epoch")):
                continue
            for key, value in row.items():
                if key not in SKIP_CURVES and _finite(value):
                    w.add_scalar(key, value, int(row["epoch"]), walltime=now)
                    n += 1
        for row in run.diagnostics:
            if not _finite(row.get("epoch")):
                continue
            for key, value in row.items():
                if key not in DIAG_KEYS and _finite(value):
                    tag = f"diagnostics/{row['layer']}/{key}"
                    w.add_scalar(tag, value, int(row["epoch"]), walltime=now)
                    n += 1
        for key, value in final.items():
            w.add_scalar(f"final/{key}", value, last, walltime=now)
            n += 1
        w.file_writer.add_summary(_session_end(run.status), walltime=now)
    return n


def write(run: RunFiles, opts) -> dict:
    """Write the run's event files; returns {"dir": the folder, "scalars": how many points}."""
    target = run.path / opts.tensorboard_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        n = _write_events(tmp, run)
        os.chmod(tmp, 0o755)
        old = None
        if target.exists():
            old = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old")
            os.replace(target, os.path.join(old, "x"))
        os.replace(tmp, target)
        tmp = None
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"dir": str(target), "scalars": n}
