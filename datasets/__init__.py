"""TensorFlow Datasets builders for the pipeline's output."""
