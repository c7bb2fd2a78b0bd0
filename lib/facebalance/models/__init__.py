"""Models: classifiers, their training loop and checkpoints, the DCGAN."""
