# Hydra discovers plugins in the hydra_plugins namespace; this one adds hydra/launcher=vmap.
