"""The `vlm-lam` command line: one typer app; each package adds its own commands.

Heavy imports (torch, transformers, mujoco) happen inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="vlm-lam",
    help="Latent action models on promptable VLM embeddings, on Distracting MetaWorld.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_all() -> None:
    from cache_schemas import cli as cache_cli
    from lam import cli as lam_cli
    from pipeline import collect_cli, embed_cli
    from pipeline.lerobot import cli as lerobot_cli
    from policy import cli as policy_cli

    for module in (collect_cli, embed_cli, lerobot_cli, cache_cli, lam_cli, policy_cli):
        module.register(app)


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
