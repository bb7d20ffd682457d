"""Shared helpers of the lam tests (a unique module name: test folders share sys.path)."""

from factories import make_embeddings  # noqa: F401  (lam tests import it from here too)


def tiny_config(**kw):
    """A LAM small enough to train in about a second on the factory's 16 px frames."""
    from lam.config import LAMConfig

    base = dict(
        target="state",
        latent_dim=8,
        steps=20,
        batch_size=16,
        img_size=16,
        channels=(8, 16),
        hidden=32,
        pixel_target_size=8,
        log_every=5,
    )
    base.update(kw)
    return LAMConfig(**base)


def quiet_opts(tmp_path, **kw):
    from lam.train import TrainOptions

    return TrainOptions(
        runs=str(tmp_path / "runs"), cache=str(tmp_path / "cache"), progress=False, accelerator="cpu", **kw
    )
