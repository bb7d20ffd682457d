"""The docs stay true: every command line they show runs, and every link they make lands.

README.md and docs/**/*.md are read as Markdown. In fenced code blocks and in inline code spans:
- a `vlm-lam ...` line must name a command of the typer app (`pipeline.cli.app`, sub-commands of
  groups included) and only options that command takes (`--help` always; `[--opt]` is an option
  too; placeholders such as `...` and `<command>` are skipped);
- a `make ...` line must name targets that are rules of the Makefile and `VAR=value` pairs whose
  variable the Makefile declares or uses.
Outside code, every relative link must point at a file that exists and, for `page.md#anchor`, at
a heading of that page.

The checkers are plain functions; the unit tests at the end feed them wrong input on purpose, so
a checker that reports nothing fails too.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console", "zsh"}  # fenced blocks whose lines are commands
INLINE_CODE = re.compile(r"(`+)([^`]+?)\1", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {"&&", "||", ";", "|", ">", ">>", "2>&1", "&"}


# --------------------------------------------------------------------------- reading Markdown
@dataclass(frozen=True)
class Snippet:
    """One command line found in a Markdown file (continuation lines joined)."""

    file: Path
    line: int
    text: str

    def where(self) -> str:
        return f"{self.file.relative_to(ROOT) if self.file.is_relative_to(ROOT) else self.file}:{self.line}"


def split_markdown(text: str) -> tuple[list[tuple[int, str, str]], list[tuple[int, str]]]:
    """(lines inside fenced code blocks with the block's language, lines outside them), each with
    its 1-based number."""
    code, prose, fenced, lang = [], [], None, ""
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m and (fenced is None or m.group(1) == fenced):
            fenced, lang = (m.group(1), m.group(2).lower()) if fenced is None else (None, "")
            continue
        if fenced:
            code.append((n, line, lang))
        else:
            prose.append((n, line))
    return code, prose


def code_lines(file: Path, text: str) -> list[Snippet]:
    """Logical lines of the shell (or unlabelled) fenced blocks: a line ending in `\\`, or followed
    by an indented line, continues on the next one (how the docs wrap a long command). Blocks in
    another language (bibtex, python, text) hold no command lines."""
    out: list[Snippet] = []
    code, _ = split_markdown(text)
    prev_n = None
    for n, line, lang in code:
        if lang not in SHELL_BLOCKS:
            continue
        joined = out and prev_n == n - 1 and (out[-1].text.endswith("\\") or (line[:1].isspace() and line.strip()))
        if joined:
            last = out[-1]
            out[-1] = Snippet(file, last.line, last.text.rstrip("\\").rstrip() + " " + line.strip())
        elif line.strip():
            out.append(Snippet(file, n, line.strip()))
        prev_n = n
    return out


def inline_spans(file: Path, text: str) -> list[Snippet]:
    """Inline code spans of the prose (outside fenced blocks); a span may wrap onto the next line
    of its paragraph."""
    out = []
    for first, para in paragraphs(text):
        for m in INLINE_CODE.finditer(para):
            out.append(Snippet(file, first + para.count("\n", 0, m.start()), " ".join(m.group(2).split())))
    return out


def paragraphs(text: str) -> list[tuple[int, str]]:
    """The prose as (first line number, the paragraph's lines joined by newlines): inline code and
    links may wrap from one line to the next within a paragraph."""
    _, prose = split_markdown(text)
    groups: list[list[tuple[int, str]]] = []
    for n, line in prose:
        if groups and line.strip() and groups[-1][-1][0] == n - 1 and groups[-1][-1][1].strip():
            groups[-1].append((n, line))
        else:
            groups.append([(n, line)])
    return [(g[0][0], "\n".join(line for _, line in g)) for g in groups]


def tokens(text: str) -> list[str]:
    """Shell words of a line, comments dropped; `$(command -v vlm-lam)` and `-m pipeline.cli` read
    as `vlm-lam`."""
    text = text.replace("$(command -v vlm-lam)", "vlm-lam").replace("-m pipeline.cli", "vlm-lam")
    text = re.sub(r"<[^<>\n]*>", lambda m: m.group(0).replace(" ", "_"), text)  # `<a placeholder>`: one word
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote in a comment or a placeholder
        return text.split("#", 1)[0].split()


def commands(text: str) -> list[tuple[str, list[str]]]:
    """(`vlm-lam` | `make`, the words after it) for every command a line runs. Leading VAR=value
    words are the environment; a `|` inside [brackets] is an alternative, not a pipe."""
    out, segment, depth = [], [], 0
    for word in [*tokens(text), ";"]:
        if word in SEPARATORS and depth <= 0:
            found = command_of(segment)
            if found:
                out.append(found)
            segment, depth = [], 0
            continue
        depth += word.count("[") - word.count("]")
        segment.append(word)
    return out


def command_of(words: list[str]) -> tuple[str, list[str]] | None:
    i = 0
    while i < len(words) and ENV_ASSIGN.match(words[i]):
        i += 1
    if i < len(words) and words[i] == "make":
        return "make", words[i + 1 :]
    for j, word in enumerate(words):
        if word == "vlm-lam" or word.endswith("/vlm-lam"):
            return "vlm-lam", words[j + 1 :]
    return None


# --------------------------------------------------------------------------- vlm-lam lines
def cli_tree() -> dict:
    """{command: {option, ...}} and {group: {sub-command: {option, ...}}} from the typer app."""
    import typer

    import pipeline.cli

    def walk(cmd) -> dict | set:
        if hasattr(cmd, "commands"):
            return {name: walk(sub) for name, sub in cmd.commands.items()}
        opts = {"--help"}
        for p in cmd.params:
            if p.param_type_name == "option":
                opts.update(o for o in (*p.opts, *p.secondary_opts) if o.startswith("--"))
        return opts

    return walk(typer.main.get_command(pipeline.cli.app))


def is_placeholder(word: str) -> bool:
    return word in ("...", "…") or word.startswith("<") or word.startswith("$") or not word


def option_name(word: str) -> str | None:
    """`[--latent-dim` / `--grid="a b"]` / `--max-memory=0=70GiB` -> the option's name."""
    word = word.strip("[](),")
    if not word.startswith("--"):
        return None
    return word.split("=", 1)[0]


def check_vlm_lam(words: list[str], tree: dict) -> list[str]:
    """What is wrong with `vlm-lam <words>` ([] when it names a real command and real options)."""
    node: dict | set = tree
    path = ["vlm-lam"]
    rest = list(words)
    while isinstance(node, dict):
        if rest and option_name(rest[0]) == "--help":
            return []
        if not rest:
            return [] if path == ["vlm-lam"] else [f"`{' '.join(path)}` needs a sub-command: {', '.join(node)}"]
        word = rest.pop(0).strip("[]")
        if is_placeholder(word):
            return []  # `vlm-lam <command> --help`, `vlm-lam ...`: nothing to check
        if word not in node:
            return [f"`{' '.join(path)} {word}`: no such command (there are: {', '.join(sorted(node))})"]
        node, path = node[word], [*path, word]
    bad = [name for name in map(option_name, rest) if name and name not in node]
    return [f"`{' '.join(path)}` has no option {name}" for name in bad]


# --------------------------------------------------------------------------- make lines
@dataclass(frozen=True)
class Makefile:
    targets: frozenset[str]
    variables: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Makefile:
        """Rules (`a b: deps`, not pattern or `$(...)` ones), variables assigned (`V ?= x`,
        `target: export V ?= x`, `define V`) and variables used (`$(V)`, `${V}`)."""
        text = text.replace("\\\n", " ")
        targets, variables, in_define = set(), set(), False
        assign = re.compile(r"^(?:[^:=#]*:\s*)?(?:export\s+|override\s+)*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\?|::?|\+)?=")
        for line in text.splitlines():
            if in_define:
                in_define = line.strip() != "endef"
                continue
            if m := re.match(r"^define\s+([A-Za-z_][A-Za-z0-9_]*)", line):
                variables.add(m.group(1))
                in_define = True
                continue
            if line.startswith("\t") or line.lstrip().startswith("#"):
                continue
            if m := assign.match(line):
                variables.add(m.group(1))
            rule = re.match(r"^([^:=#\t]+?)\s*:(?![:=])", line)
            if rule and "$(" not in rule.group(1) and "%" not in rule.group(1):
                targets.update(t for t in rule.group(1).split() if not t.startswith("."))
        variables.update(re.findall(r"\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]", text))
        return cls(frozenset(targets), frozenset(variables))


def check_make(words: list[str], makefile: Makefile) -> list[str]:
    """What is wrong with `make <words>`: unknown targets and undeclared variables."""
    problems = []
    for word in words:
        word = word.strip("[]")
        if is_placeholder(word) or word.startswith("-"):
            continue
        if "=" in word:
            var = word.split("=", 1)[0]
            if var not in makefile.variables:
                problems.append(f"`make`: the Makefile has no variable {var}")
        elif word not in makefile.targets:
            problems.append(f"`make {word}`: the Makefile has no such target")
    return problems


# --------------------------------------------------------------------------- links
def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor the headings of a page give (a repeated heading gets -1, -2, ...)."""
    _, prose = split_markdown(text)
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose:
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def check_links(file: Path, text: str) -> list[str]:
    """Relative links of the page's prose that point nowhere (a file, or a heading of a page)."""
    problems = []
    for first, para in paragraphs(text):
        para = INLINE_CODE.sub(lambda m: "\n" * m.group(0).count("\n"), para)  # code is no link
        for m in LINK.finditer(para):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            dest = (file.parent / path_part).resolve() if path_part else file
            where = f"{file.name}:{first + para.count(chr(10), 0, m.start())}"
            if not dest.exists():
                problems.append(f"{where}: link to {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                problems.append(f"{where}: link to {target}: {dest.name} has no heading #{anchor}")
    return problems


# --------------------------------------------------------------------------- the docs
@pytest.fixture(scope="module")
def tree() -> dict:
    return cli_tree()


@pytest.fixture(scope="module")
def makefile() -> Makefile:
    return Makefile.parse((ROOT / "Makefile").read_text())


def doc_snippets() -> list[Snippet]:
    out = []
    for file in DOCS:
        text = file.read_text()
        out += code_lines(file, text) + inline_spans(file, text)
    return out


def test_there_are_docs_to_check():
    assert (ROOT / "README.md") in DOCS and len(DOCS) > 1
    found = [c for s in doc_snippets() for c, _ in commands(s.text)]
    assert found.count("vlm-lam") > 20 and found.count("make") > 10, "the command extraction found almost nothing"


def test_every_command_line_of_the_docs_is_real(tree, makefile):
    problems = []
    for snippet in doc_snippets():
        for cmd, words in commands(snippet.text):
            found = check_vlm_lam(words, tree) if cmd == "vlm-lam" else check_make(words, makefile)
            problems += [f"{snippet.where()}: {p}\n    {snippet.text}" for p in found]
    assert not problems, "\n".join(problems)


def test_every_relative_link_of_the_docs_resolves():
    problems = [p for file in DOCS for p in check_links(file, file.read_text())]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- the checkers fail
TREE = {
    "train-lam": {"--help", "--steps", "--latent-dim"},
    "ingest": {"lerobot": {"--help", "--camera"}},
}
MAKEFILE = Makefile.parse("EPISODES ?=\nVLM ?=\n.PHONY: embed\nembed: install\n\t$(VLMLAM) embed $(PRESET)\ninstall:\n")


def test_check_vlm_lam_reports_an_unknown_option_command_and_sub_command():
    assert check_vlm_lam(["train-lam", "--steps", "5", "[--latent-dim", "32]"], TREE) == []
    assert check_vlm_lam(["train-lam", "--stpes", "5"], TREE) == ["`vlm-lam train-lam` has no option --stpes"]
    assert check_vlm_lam(["train-lam", "[--no-such=3]"], TREE) == ["`vlm-lam train-lam` has no option --no-such"]
    assert "no such command" in check_vlm_lam(["trian-lam", "--steps", "5"], TREE)[0]
    assert "no such command" in check_vlm_lam(["ingest", "parquet", "PATH"], TREE)[0]
    assert "needs a sub-command" in check_vlm_lam(["ingest"], TREE)[0]
    assert check_vlm_lam(["ingest", "lerobot", "PATH", "--camera", "top"], TREE) == []
    assert check_vlm_lam(["ingest", "lerobot", "--help"], TREE) == []
    assert check_vlm_lam(["<command>", "--help"], TREE) == []


def test_check_make_reports_an_unknown_target_and_variable():
    assert check_make(["embed", "VLM=molmo", "EPISODES=3", "PRESET=demo"], MAKEFILE) == []
    assert check_make(["embedd"], MAKEFILE) == ["`make embedd`: the Makefile has no such target"]
    assert check_make(["embed", "VLN=molmo"], MAKEFILE) == ["`make`: the Makefile has no variable VLN"]
    assert "PHONY" not in MAKEFILE.targets and {"embed", "install"} <= MAKEFILE.targets


def test_commands_finds_every_command_a_line_runs():
    line = "HF_HUB_OFFLINE=1 make embed VLM=x  # then `vlm-lam --bogus`"
    assert commands(line) == [("make", ["embed", "VLM=x"])]
    assert commands("accelerate launch --num_processes 8 $(command -v vlm-lam) embed --vlm m") == [
        ("vlm-lam", ["embed", "--vlm", "m"])
    ]
    assert commands("vlm-lam collect [--tasks a,b | MT10] && make eval") == [
        ("vlm-lam", ["collect", "[--tasks", "a,b", "|", "MT10]"]),
        ("make", ["eval"]),
    ]
    assert commands("make study EMB=<embedding store>") == [("make", ["study", "EMB=<embedding_store>"])]
    text = (
        "```bash\nvlm-lam collect --preset demo\n    [--workers 2] \\\n  --quiet\nmake eval\n```\n"
        "```bibtex\n@software{x,\n  title = {vlm-lam trains LAMs},\n}\n```\n"
    )
    assert [s.text for s in code_lines(Path("x.md"), text)] == [
        "vlm-lam collect --preset demo [--workers 2] --quiet",
        "make eval",
    ]
    assert [(s.line, s.text) for s in inline_spans(Path("x.md"), "run `make demo`, then `vlm-lam\nshow`\n\n`a`\n")] == [
        (1, "make demo"),
        (1, "vlm-lam show"),
        (4, "a"),
    ]


def test_check_links_reports_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Two words, one comma\n")
    (tmp_path / "fig.png").write_bytes(b"")
    page = tmp_path / "page.md"
    text = (
        "# Page\n[ok](other.md) [ok](other.md#two-words-one-comma) ![ok](fig.png) [ok](#page)\n"
        "[web](https://example.org/x.md) `[not a link](nowhere.md)`\n"
        "[bad](missing.md) [bad](other.md#no-such-heading) ![bad](figure.png) [bad, wrapped over\ntwo lines](#nope)\n"
        "```\n[in code](nowhere.md)\n```\n"
    )
    page.write_text(text)
    problems = check_links(page, text)
    assert len(problems) == 4, problems
    assert "missing.md: no such file" in problems[0] and "no heading #no-such-heading" in problems[1]
    assert "figure.png: no such file" in problems[2] and "no heading #nope" in problems[3]
