"""JAX implementation: Flax NNX modules, Optax optimizers, NHWC arrays, steps under jax.jit."""
