"""Sweeps: the search-space grammar Hydra's override parser learns (sweep.grammar), the spaces and
their samplers (sweep.space), the engine behind hydra/sweeper=runner|random|tpe (sweep.run; its
plan: sweep.plan; hyperband's rungs: sweep.rungs), the summary and closing table (sweep.report)
and the vmap launcher's grouping and writing (sweep.launcher; the training of a group is
runner.vectorized)."""
