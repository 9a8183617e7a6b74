"""The README stays a short user's guide whose commands work, and the docs' links resolve.

Every fenced command in README.md must name something real: a Makefile target (`make X`), an
`lrem` command line the real argument parser accepts (`lrem ...`, `.venv/bin/lrem ...`, options
included), a `dvc` or `git` subcommand, a route of the search service (`curl .../search`), or an
existing file. Every relative link in README.md and docs/*.md must point at an existing file,
and an `#anchor` at a heading of it.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 260
COMMAND_FENCES = {"bash", "sh", "shell", "console"}
# a line that starts so is a command in any fence (a diagram or a file tree in a plain fence is not)
COMMAND_STARTS = ("make ", "lrem ", ".venv/bin/", "dvc ", "git ", "curl ", "python", "$ ")
DVC_COMMANDS = {"add", "push", "pull", "status", "checkout", "repro", "init", "remote", "diff"}
GIT_COMMANDS = {"add", "commit", "push", "pull", "checkout", "log", "status"}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return [(m.group(1).strip().lower(), m.group(2))
            for m in re.finditer(r"^```([^\n`]*)\n(.*?)^```", text, flags=re.M | re.S)]


def readme_commands(text: str | None = None) -> list[list[str]]:
    """Every command in the README's fences, as argv lists (comments dropped, `&&`, `;`, `|` split).

    Every line of a bash/sh/shell/console fence is a command; in any other fence, a line that
    starts like one (COMMAND_STARTS)."""
    commands: list[list[str]] = []
    for lang, body in fenced_blocks(README.read_text() if text is None else text):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip()
            if lang not in COMMAND_FENCES and not line.startswith(COMMAND_STARTS):
                continue
            line = re.sub(r"^\$\s+", "", line)
            if not line or line.startswith("#"):
                continue
            tokens = shlex.split(line, comments=True)
            current: list[str] = []
            for tok in tokens + [";"]:
                if tok in {"&&", "||", ";", "|"}:
                    if current:
                        commands.append(current)
                    current = []
                else:
                    current.append(tok)
    return commands


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.M)
            if not m.group(1).startswith(".") and not m.group(1).startswith("$")}


def service_routes() -> set[str]:
    app = (ROOT / "components" / "service" / "app.py").read_text()
    return set(re.findall(r"@app\.(?:get|post|put|delete)\(\"([^\"]+)\"", app))


def is_placeholder(tok: str) -> bool:
    return tok.startswith("<") and tok.endswith(">")


class _Parsed(Exception):
    pass


def check_lrem(argv: list[str], monkeypatch) -> str | None:
    """None when the real `lrem` parser accepts argv; else why not. Nothing is run."""
    from components import cli

    real = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        raise _Parsed(real(self, args, namespace))

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", parse_only)
        try:
            cli.main([a.replace("<", "").replace(">", "") for a in argv])
        except _Parsed:
            return None
        except SystemExit as exc:
            return f"the lrem parser rejects it (exit {exc.code})"
    return "lrem ran instead of only parsing"


def check_command(argv: list[str], monkeypatch) -> str | None:
    prog, args = argv[0], argv[1:]
    if prog == "make":
        unknown = [a for a in args if not a.startswith("-") and "=" not in a and a not in makefile_targets()]
        return f"no Makefile target {unknown}" if unknown or not args else None
    if prog in {"lrem", ".venv/bin/lrem"}:
        return check_lrem(args, monkeypatch)
    if prog in {"dvc", ".venv/bin/dvc"}:
        return None if args and args[0] in DVC_COMMANDS else f"unknown dvc command {args[:1]}"
    if prog == "git":
        return None if args and args[0] in GIT_COMMANDS else f"unknown git command {args[:1]}"
    if prog == "curl":
        urls = [a for a in args if re.match(r"^(https?://)?(localhost|127\.0\.0\.1)(:\d+)?/", a)]
        paths = ["/" + u.split("/", 3 if u.startswith("http") else 1)[-1] for u in urls]
        missing = [p for p in paths if p.split("?")[0] not in service_routes()]
        return f"no service route {missing}" if missing or not urls else None
    return None if (ROOT / prog).exists() else f"{prog!r} is not a Makefile target, lrem command or file"


def check_paths(argv: list[str]) -> list[str]:
    """Repository paths a command names that do not exist (placeholders, URLs, .venv, state dirs aside)."""
    missing = []
    for tok in argv[1:]:
        if is_placeholder(tok) or "://" in tok or tok.startswith(("-", "{", ".venv/", ".lrem/", "localhost")):
            continue
        if "/" in tok and not re.search(r"\s", tok) and not (ROOT / tok).exists():
            missing.append(tok)
    return missing


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move detail to docs/")


def test_readme_commands_name_real_targets_commands_and_files(monkeypatch):
    commands = readme_commands()
    assert any(c[:2] == ["make", "demo"] for c in commands) and any(c[:2] == ["make", "test"] for c in commands)
    problems = []
    for argv in commands:
        why = check_command(argv, monkeypatch)
        if why:
            problems.append(f"{' '.join(argv)}: {why}")
        missing = check_paths(argv)
        if missing:
            problems.append(f"{' '.join(argv)}: no such file {missing}")
    assert not problems, "\n".join(problems)


def test_the_checks_catch_a_bad_command(monkeypatch):
    text = "```bash\nmake no-such-target\n.venv/bin/lrem no-such-command\nlrem clean-up --no-such-option\n" \
           "curl -s localhost:8765/nope\nbench/no_such.py\nlrem step x --ctx no/such/ctx.json\n```\n"
    commands = readme_commands(text)
    assert len(commands) == 6
    assert all(check_command(c, monkeypatch) for c in commands[:5])
    assert check_paths(commands[5]) == ["no/such/ctx.json"]
    ok = readme_commands("```bash\nmake demo && .venv/bin/lrem serve-sync  # comment\n```\n"
                         "```text\nnot a command\n```\n```\na -> b\nmake test\n```\n")
    assert ok == [["make", "demo"], [".venv/bin/lrem", "serve-sync"], ["make", "test"]]
    assert not any(check_command(c, monkeypatch) for c in ok)


def github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", md.read_text(), flags=re.M | re.S)
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, flags=re.M)}


RESULTS = ROOT / "experiments" / "results"
DOC_FILES = [README, *sorted((ROOT / "docs").glob("*.md")), RESULTS / "README.md", RESULTS / "archive" / "README.md"]


@pytest.mark.parametrize("md", DOC_FILES, ids=[str(p.relative_to(ROOT)) for p in DOC_FILES])
def test_doc_links_resolve(md):
    text = re.sub(r"^```.*?^```", "", md.read_text(), flags=re.M | re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{md.relative_to(ROOT)}: broken links {broken}"


def test_docs_pages_exist():
    for page in ("model", "experiments", "operations", "serving", "benchmarks"):
        assert (ROOT / "docs" / f"{page}.md").exists(), page


def test_named_result_files_exist():
    """A report path named in the docs or the probes log (e.g. after a move to archive/) exists."""
    missing = []
    for md in [*DOC_FILES, RESULTS / "probes.md"]:
        for path in re.findall(r"experiments/results/[\w/]+\.(?:md|json)", md.read_text()):
            if not (ROOT / path).exists():
                missing.append(f"{md.relative_to(ROOT)}: {path}")
    assert not missing, missing


def test_every_archived_report_is_indexed():
    index = (RESULTS / "archive" / "README.md").read_text()
    reports = sorted(p.name for p in (RESULTS / "archive").glob("*.md") if p.name != "README.md")
    assert reports and [r for r in reports if f"]({r})" not in index] == []
    top = (RESULTS / "README.md").read_text()  # a current report at the top level is listed there too
    assert [p.name for p in RESULTS.glob("*.md") if p.name != "README.md" and f"]({p.name})" not in top] == []
