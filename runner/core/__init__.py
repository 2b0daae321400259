"""The compiled core: a static, hashable Spec (core.spec) and traced hyperparameters go in, pure
functions of (state, data, hyperparameters) come out (core.train), over one TrainState pytree
(core.state), built from flax.linen models (core.nn), optax optimizers (core.optim), schedules
(core.schedules), heads and losses (core.losses) and per-layer statistics (core.layerstats);
core.programs keeps their compiled executables. Imports jax, optax, flax, numpy, the standard
library, other runner.core modules and runner.config only: no files, no printing, no Hydra, no
host modules (the import contract in pyproject.toml)."""
