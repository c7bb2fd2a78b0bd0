"""Balancing strategies: training-set index builders and training-time options."""
