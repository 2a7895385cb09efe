"""Unsupervised adaptation of the generator to a target site: the latent objective and its guards."""
