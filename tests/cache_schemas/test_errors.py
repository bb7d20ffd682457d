"""What a command prints when the disk is full or a store is damaged: one line, exit status 2."""

import errno

import pytest

from cache_schemas.errors import ChunkError, StoreError, cli_guard, cli_message, disk_full, disk_full_message


def test_disk_full_is_found_anywhere_in_the_chain(tmp_path):
    inner = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))
    try:
        try:
            raise inner
        except OSError as exc:
            raise RuntimeError("writer thread failed") from exc
    except RuntimeError as outer:
        assert disk_full(outer) is inner
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded")) is not None
    assert disk_full(OSError(errno.EACCES, "Permission denied")) is None


def test_the_message_names_path_and_free_space(tmp_path):
    msg = disk_full_message(OSError(errno.ENOSPC, "No space", str(tmp_path / "a" / "b.json")))
    assert msg.startswith(f"disk full: could not write {tmp_path / 'a' / 'b.json'} (")
    assert " free on " in msg and str(tmp_path) in msg and "run the same command again" in msg
    # no path in the error: the command's output root with the least room left is named
    msg = disk_full_message(OSError(errno.ENOSPC, "No space"), where=[tmp_path / "runs"])
    assert f"could not write {tmp_path}" in msg


def test_cli_guard_prints_one_line_and_exits_2(tmp_path, capsys):
    @cli_guard
    def cmd(cache=None, runs=None):
        raise RuntimeError("flush failed") from OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SystemExit) as info:
        cmd(cache=str(tmp_path / "cache"))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: disk full: could not write ") and "Traceback" not in err


def test_cli_guard_reports_store_errors_and_leaves_bugs_alone(capsys):
    @cli_guard
    def damaged():
        raise ChunkError.missing("/c/episodes/x", "frames", 3)

    with pytest.raises(SystemExit):
        damaged()
    assert "array 'frames' chunk 3 is missing" in capsys.readouterr().err

    @cli_guard
    def bug():
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        bug()
    assert cli_message(StoreError("no store at x")) == "no store at x"


def test_cli_guard_keeps_the_signature_typer_reads():
    import inspect

    def cmd(path: str, force: bool = False):
        return path

    guarded = cli_guard(cmd)
    assert inspect.signature(guarded) == inspect.signature(cmd) and guarded("p") == "p"
    assert cli_guard(guarded) is guarded


def test_a_commands_own_exit_is_left_alone(capsys):
    import typer

    @cli_guard
    def cmd():
        try:
            raise StoreError("no store at x")
        except StoreError:
            typer.echo("error: no store at x", err=True)
            raise typer.Exit(2) from None

    with pytest.raises(typer.Exit):
        cmd()
    assert capsys.readouterr().err.count("error:") == 1
