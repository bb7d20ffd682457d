"""Headless Chromium (Debian's `chromium` package) for the report explorer's tests and its bench:
open a page from disk, read back its DOM after its scripts ran, take a screenshot, and collect
what the page wrote to its console (Chromium logs every console message and uncaught error to
stderr as `...:CONSOLE(line)] "message", source: ...`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CONSOLE = re.compile(r":CONSOLE(?:\(\d+\))?\] (.*)")


def find_chromium() -> str | None:
    """The path of a Chromium binary, or None."""
    return next((p for p in map(shutil.which, NAMES) if p), None)


@dataclass
class Visit:
    """What one headless visit of a page gave back."""

    dom: str  # the serialised DOM after the page's scripts ran ('' for a screenshot visit)
    console: list[str]  # console messages and uncaught errors, in order
    seconds: float  # the browser process's wall time, start-up included


def visit(
    url: str, *, screenshot: Path | None = None, size: tuple[int, int] = (1400, 2400), timeout: float = 60
) -> Visit:
    """Open `url` in a fresh headless Chromium (its own profile folder, no network needed):
    --dump-dom, or with `screenshot` a PNG of the window at `size`."""
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("no chromium on PATH (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        args = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=2000",  # virtual: the page's timers run out at once
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={screenshot}" if screenshot else "--dump-dom",
            url,
        ]
        t0 = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - t0
    console = [m[1] for line in done.stderr.splitlines() if (m := CONSOLE.search(line))]
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return Visit("" if screenshot else done.stdout, console, seconds)


def table_rows(dom: str, table_id: str = "runs") -> list[list[str]]:
    """The cells of each body row of the table with id `table_id` in a dumped DOM."""
    body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', dom, re.S)
    if body is None:
        return []
    rows = re.findall(r"<tr>(.*?)</tr>", body[1], re.S)
    return [re.findall(r"<td[^>]*>(.*?)</td>", r, re.S) for r in rows]


def body_data(dom: str, name: str) -> str | None:
    """A `data-<name>` attribute of the page's <body> (the explorer writes ready-ms and timings)."""
    m = re.search(rf'<body[^>]*\sdata-{name}="([^"]*)"', dom)
    return None if m is None else m[1].replace("&quot;", '"')
