"""The habits that keep the code one thing in one place (issue 21): each check reads the source,
so a new copy of an owned format, a second way to report an error or a new long function fails
here with the file and line to look at."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cache_schemas", "pipeline", "lam", "policy")
MAX_LINES = 60
# The functions allowed past MAX_LINES, each with why splitting it would not make it clearer.
LONG_FUNCTIONS = {
    ("pipeline/vlm/backbones.py", "_entries"): "a registry: one Backbone(...) entry per model, read as a table",
}
# Run and eval folder files, opened only by their format's own module.
FOLDER_FILES = ("config.json", "probe.json", "done", "latents.safetensors", "checkpoint.safetensors", "results.json")
FOLDER_OWNERS = {"lam/rundir.py", "policy/evalfolder.py"}
# Python files that are not ours (a checkpoint's remote code, copied for the offline twin).
FOREIGN = ("pipeline/vlm/twins_remote/",)


def sources(packages=PACKAGES) -> list[tuple[str, str]]:
    out = []
    for pkg in packages:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            rel = f.relative_to(ROOT).as_posix()
            if not rel.startswith(FOREIGN):
                out.append((rel, f.read_text()))
    return out


def long_functions(files: list[tuple[str, str]], limit: int = MAX_LINES) -> dict[tuple[str, str], int]:
    """(file, function) -> lines, for every def (nested ones too) longer than `limit`."""
    found = {}
    for rel, text in files:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    found[(rel, node.name)] = n
    return found


def raw_folder_reads(files: list[tuple[str, str]]) -> list[str]:
    """Lines outside the owners that name a run or eval folder file in a path expression."""
    names = "|".join(re.escape(n) for n in FOLDER_FILES)
    pattern = re.compile(rf"""(/\s*["']({names})["']|["']eval["']\s*/)""")
    return [
        f"{rel}:{i}: {line.strip()}"
        for rel, text in files
        if rel not in FOLDER_OWNERS
        for i, line in enumerate(text.splitlines(), 1)
        if pattern.search(line) and "model" not in line and "folder /" not in line
    ]


def second_error_paths(files: list[tuple[str, str]]) -> list[str]:
    """Places that end a command on a user error themselves instead of raising UserError for
    `cli_guard` (the one place that prints `error: ...` and exits with status 2)."""
    pattern = re.compile(r"def _fail\b|def _guarded\b|typer\.Exit\(2\)|(typer\.echo|print)\(f?[\"']error:")
    return [
        f"{rel}:{i}: {line.strip()}"
        for rel, text in files
        if rel != "cache_schemas/errors.py"
        for i, line in enumerate(text.splitlines(), 1)
        if pattern.search(line)
    ]


def newest_rules(files: list[tuple[str, str]]) -> list[str]:
    """Places that pick 'the newest store' by modification time outside cache_schemas.listing."""
    return [
        f"{rel}:{i}: {line.strip()}"
        for rel, text in files
        if rel != "cache_schemas/listing.py"
        for i, line in enumerate(text.splitlines(), 1)
        if "zarr.json" in line and "st_mtime" in line
    ]


def test_no_function_is_longer_than_its_job():
    found = long_functions(sources())
    unexplained = {k: n for k, n in found.items() if k not in LONG_FUNCTIONS}
    assert not unexplained, (
        f"functions over {MAX_LINES} lines (split them, or say why in LONG_FUNCTIONS): {unexplained}"
    )
    stale = [k for k in LONG_FUNCTIONS if k not in found]
    assert not stale, f"LONG_FUNCTIONS names functions that are no longer long: {stale}"
    assert len(LONG_FUNCTIONS) <= 4


def test_run_and_eval_folders_are_read_only_through_their_readers():
    assert raw_folder_reads(sources()) == []


def test_user_errors_are_reported_one_way():
    assert second_error_paths(sources()) == []


def test_the_newest_store_is_chosen_in_one_place():
    assert newest_rules(sources()) == []


@pytest.mark.parametrize(
    "check, code",
    [
        (raw_folder_reads, 'cfg = json.loads((path / "config.json").read_text())'),
        (raw_folder_reads, 'results = run / "eval" / "results.json"'),
        (second_error_paths, 'typer.echo(f"error: {exc}", err=True)'),
        (second_error_paths, "def _fail(msg):"),
        (newest_rules, 'max(found, key=lambda p: (p / "zarr.json").stat().st_mtime)'),
    ],
)
def test_each_check_catches_what_it_is_for(check, code):
    assert check([("policy/new.py", code)]), f"{check.__name__} missed: {code}"


def test_the_length_check_catches_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    assert long_functions([("policy/new.py", f"def f():\n{body}\n")]) == {("policy/new.py", "f"): MAX_LINES + 1}
