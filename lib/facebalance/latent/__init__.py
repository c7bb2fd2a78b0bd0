"""Latent space: sampling, boundaries, z/z' complements and pairs."""
