"""The compiled core: a static, hashable Spec (core.spec) and traced hyperparameters go in, pure
functions of (state, data, hyperparameters) come out (core.train), built from flax.linen models
(core.nn), optax optimizers (core.optim), schedules (core.schedules), heads and losses
(core.losses) and per-layer statistics (core.layerstats). Imports jax, optax, flax and
runner.config only: no files, no printing, no Hydra (the import contract in pyproject.toml)."""
