"""runner: Hydra-configured, JAX-jitted experiments for studying how neural networks train."""

__version__ = "0.1.0"
