"""Training: the Trainer generator, its reports, optimizers/schedulers and checkpoints."""
