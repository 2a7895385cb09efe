"""Losses as pure functions of tensors: adversarial (LSGAN), reconstruction, feature matching, KL."""
