"""Stage two: IDM + FDM latent action models trained from the cache, sweeps, linear probe.

    vlm-lam train-lam --target emb:molmo.ignore_distractors   # one run -> runs/<id>/
    vlm-lam sweep --grid "latent_dim=32,128 lr=1e-3,3e-4 seed=0,1"
    vlm-lam science                                          # pixels vs pixels-clean vs state

Modules: `config` (LAMConfig), `data` (frames and transition rows from an episode store),
`targets` (what the FDM predicts), `model` (IDM, FDM), `ensemble` (stacked members, vmap,
per-member Adam), `module` (the LightningModule), `probe` (ridge z -> actions), `rundir` (run
folders), `train` (orchestration), `lightning_logs` (Lightning's loggers and log filter),
`sweep` (grids), `science` (the distractor check).
Eval reads a run through `rundir.load_latents` and `config.json` (episode store path and
fingerprint, k, target).
"""
