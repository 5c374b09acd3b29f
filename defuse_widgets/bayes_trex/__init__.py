"""Bayes-TrEx level sets: samples of the latent space at a target confidence."""
