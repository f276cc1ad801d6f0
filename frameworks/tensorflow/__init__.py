"""TensorFlow implementation: Keras layers, NHWC tensors, a GradientTape step in tf.function."""
