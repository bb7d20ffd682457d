"""Downstream: latent behaviour cloning, action decoder, rollouts, evaluation, report."""
