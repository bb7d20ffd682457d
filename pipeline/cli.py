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
    from lam import label_cli
    from pipeline import groups
    from pipeline.collect import cli as collect_cli
    from pipeline.embed import cli as embed_cli
    from pipeline.lerobot import cli as lerobot_cli
    from pipeline.videos import cli as videos_cli
    from policy import cli as policy_cli

    for module in (collect_cli, embed_cli, groups, lerobot_cli, videos_cli, cache_cli, lam_cli, label_cli, policy_cli):
        module.register(app)
    guard_commands(app)


def guard_commands(typer_app: typer.Typer) -> None:
    """Every command, sub-commands included, reports a full disk or a damaged store in one line
    with exit status 2 (cache_schemas.errors.cli_guard), however it was registered."""
    from cache_schemas.errors import cli_guard

    for command in typer_app.registered_commands:
        command.callback = cli_guard(command.callback)
    for group in typer_app.registered_groups:
        guard_commands(group.typer_instance)


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
