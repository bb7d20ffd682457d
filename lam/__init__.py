"""Stage two: IDM + FDM latent action models trained from the cache, sweeps, linear probe."""
