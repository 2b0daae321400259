"""runner's Hydra sweeper plugin (found by Hydra's scan of the hydra_plugins namespace).

The plugin class and its configs live in runner_sweeper.py; the engine in runner/sweep.py."""
