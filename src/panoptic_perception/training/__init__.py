"""Training: config, data feeding, the loop with checkpoints / resume / logs / periodic PQ."""
