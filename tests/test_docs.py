"""The docs stay true to the code: docs/cli.md lists exactly the CLI's options, README.md stays a
short front door that starts with `make run` and `make test`, and every relative link resolves.

docs/cli.md's format, which this test parses: one ``## rayscale COMMAND`` heading per command (``##
rayscale`` for the options before the command), and tables whose first column names each option in
backticks (``| `--repeats` | 5 | ... |``; ``| `--plots` / `--no-plots` | ... |`` for a flag pair). Every
``--flag`` in a table's first column under a command's heading counts as documented for that command.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import typer

from rayscale.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CLI_DOC = DOCS / "cli.md"
README_MAX_LINES = 250
MARKDOWN = [README, *sorted(DOCS.glob("*.md"))]

COMMAND_HEADING = re.compile(r"^## (rayscale(?: [a-z][a-z0-9-]*)?)\s*$")
TABLE_FLAG = re.compile(r"`(--[a-z0-9][a-z0-9-]*)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


# -- the CLI --------------------------------------------------------------------------------------


def _commands() -> dict[str, Any]:
    """Every command by its heading in docs/cli.md: ``rayscale`` (the group) and ``rayscale NAME``."""
    group: Any = typer.main.get_command(app)  # a click Group: .commands by name
    commands: dict[str, Any] = {"rayscale": group}
    commands.update({f"rayscale {name}": command for name, command in group.commands.items()})
    return commands


COMMANDS = _commands()


def _long_flags(command: Any) -> set[str]:
    """The command's long option flags, both sides of a ``--x/--no-x`` pair (``--help`` is implicit)."""
    flags: set[str] = set()
    for param in command.params:
        if param.param_type_name == "option" and not param.hidden:
            flags.update(flag for flag in [*param.opts, *param.secondary_opts] if flag.startswith("--"))
    return flags


def _argument_names(command: Any) -> list[str]:
    return [
        (param.metavar or param.name.upper()).rstrip(".")
        for param in command.params
        if param.param_type_name == "argument"
    ]


# -- markdown -------------------------------------------------------------------------------------


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (fences blanked, so line numbers are kept)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return out


def _cli_sections() -> dict[str, str]:
    """docs/cli.md's text under each ``## rayscale ...`` heading, up to the next ``#``/``##`` heading."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    fenced = False
    for line in CLI_DOC.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and re.match(r"^##? ", line):
            match = COMMAND_HEADING.match(line)
            current = match.group(1) if match else None
            if current is not None:
                assert current not in sections, f"docs/cli.md has two '## {current}' sections"
                sections[current] = []
            continue
        if current is not None:
            sections[current].append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def _documented_flags(section: str) -> set[str]:
    flags: set[str] = set()
    for line in _prose_lines(section):
        if line.lstrip().startswith("|"):
            first_cell = line.strip().strip("|").split("|")[0]
            flags.update(TABLE_FLAG.findall(first_cell))
    return flags


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    seen: Counter[str] = Counter()
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = _slug(match.group(1))
            anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
            seen[slug] += 1
        anchors.update(HTML_ANCHOR.findall(line))
    return anchors


def _relative_links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image that is not external, outside code."""
    links = []
    for number, line in enumerate(_prose_lines(path.read_text(encoding="utf-8")), start=1):
        prose = re.sub(r"`[^`]*`", "", line)  # inline code is not a link
        targets = LINK.findall(prose) + REFERENCE_LINK.findall(prose)
        links += [(number, target) for target in targets if not EXTERNAL.match(target)]
    return links


# -- docs/cli.md against the CLI ------------------------------------------------------------------


def test_cli_doc_has_one_section_per_command() -> None:
    sections = set(_cli_sections())
    missing = sorted(set(COMMANDS) - sections)
    stale = sorted(sections - set(COMMANDS))
    assert not missing, f"docs/cli.md lacks a section for: {', '.join(missing)}"
    assert not stale, f"docs/cli.md documents commands the CLI does not have: {', '.join(stale)}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_doc_lists_exactly_the_commands_options(name: str) -> None:
    section = _cli_sections().get(name)
    if section is None:
        pytest.fail(f"docs/cli.md has no '## {name}' section")
    cli, documented = _long_flags(COMMANDS[name]), _documented_flags(section)
    problems = []
    if missing := sorted(cli - documented):
        problems.append(f"'{name}' options missing from docs/cli.md: {', '.join(missing)}")
    if stale := sorted(documented - cli):
        problems.append(f"docs/cli.md lists '{name}' options the CLI does not have: {', '.join(stale)}")
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_doc_names_the_commands_arguments(name: str) -> None:
    section = _cli_sections().get(name, "")
    missing = [
        arg for arg in _argument_names(COMMANDS[name]) if not re.search(rf"\b{re.escape(arg)}\b", section)
    ]
    assert not missing, f"docs/cli.md's '## {name}' does not name its arguments: {', '.join(missing)}"


def test_the_sync_check_sees_options() -> None:
    """Guard against a parser that finds nothing: then both directions would pass vacuously."""
    run = _documented_flags(_cli_sections()["rayscale run"])
    assert {"--repeats", "--strict-metrics", "--no-strict-metrics"} <= run
    assert _long_flags(COMMANDS["rayscale run"]) >= {"--repeats", "--json"}


# -- README ---------------------------------------------------------------------------------------


def test_readme_is_a_short_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines, at most {README_MAX_LINES}"


def test_readme_starts_with_make_run_and_make_test() -> None:
    head = README.read_text(encoding="utf-8").splitlines()[:10]
    fence = next((i for i, line in enumerate(head) if line.startswith("```")), None)
    assert fence is not None, "README.md's first lines have no code block"
    commands = [line.split("#")[0].strip() for line in head[fence + 1 : fence + 3]]
    assert commands == ["make run", "make test"], f"README.md's first commands are {commands}"


# -- links ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for number, target in _relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not linked.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{where} (no heading #{anchor} in {linked.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)
