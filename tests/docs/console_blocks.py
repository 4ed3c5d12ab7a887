"""Run a documentation page's ```console blocks as a user would type them, and compare the output.

Sybil finds the blocks (its MyST code-block lexer); this module only says how one block runs:

- a line starting with `$ ` is a command (a line ending in `\\` continues it); the lines up to the
  next `$ ` are what the page says the user will see, with `...` standing for any text
  (doctest's ELLIPSIS; runs of spaces compare equal);
- every block of a page runs in one shell state: one working directory (a scratch copy of a
  checkout: the repository's top-level files linked in, so `make demo` and `.venv/bin/mlops` work
  as in a clone) and one environment, so a registry made by one block is there for the next;
- `export NAME=VALUE ...` sets variables for the page's later commands, as in a terminal;
- a command ending in `&` starts in the background: its output must show what the page shows
  within `BACKGROUND_WAIT_S`, and it is stopped when the page ends;
- a command that exits non-zero fails the block, unless the page shows it printing `error: ...`
  (the CLI's one-line answer to a mistake) or `Error from server` (kubectl's refusal);
- a command a fixture already ran as the page has it (`done`, e.g. the cluster page's
  `make cluster ...`) is not run again.

Pages whose front matter says `run: kind` are run on the kind cluster only (tests/docs/test_docs.py
marks them); pages saying `run: none` have no blocks to run.
"""

from __future__ import annotations

import doctest
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sybil import Example, Sybil
from sybil.parsers.myst import CodeBlockParser

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
# What a scratch checkout links from the repository: enough for `make <target>` and `.venv/bin/...`.
# The dashboard's bundle and its sources: the venv's make target has the bundle as a prerequisite.
CHECKOUT_LINKS = (
    "Makefile",
    "versions.mk",
    "pyproject.toml",
    "requirements.lock",
    ".venv",
    "docs",
    "mlops_control/dashboard/frontend",
    "mlops_control/dashboard/static",
)
COMMAND_TIMEOUT_S = 600
BACKGROUND_WAIT_S = 120
# MLOPS_DOCS_RECORD=FILE: run a page's commands and write what each printed to FILE, comparing
# nothing (for writing a page's expected output).
RECORD = os.environ.get("MLOPS_DOCS_RECORD", "")
# How a page shows a command that fails as it should: the CLI's one line, kubectl's refusal.
SHOWN_ERRORS = ("error:", "Error from server")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Command:
    line: str  # as typed, continuation lines joined
    want: str  # what the page shows after it


@dataclass
class PageShell:
    """The state every block of one page shares."""

    cwd: Path
    env: dict[str, str]
    done: frozenset[str] = frozenset()  # commands already run, as typed, by a fixture
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop_background(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.background.clear()


def page_front_matter(path: Path) -> dict[str, object]:
    text = path.read_text()
    if not text.startswith("---\n"):
        return {}
    end = text.index("\n---\n", 4)
    return yaml.safe_load(text[4:end]) or {}


def scratch_checkout(root: Path, more: tuple[str, ...] = ()) -> Path:
    """A folder laid out like a clone, sharing this checkout's `.venv`. `make` must find the venv
    up to date there: its install recipe, run from the scratch folder, would point the editable
    install at it. `more`: further paths to link (a cluster page's make targets run hack/ scripts
    and upload pipelines/)."""
    installed = REPO / ".venv" / ".installed"
    inputs = (REPO / "pyproject.toml", REPO / "requirements.lock")
    if not installed.exists() or any(p.stat().st_mtime > installed.stat().st_mtime for p in inputs):
        raise RuntimeError("the .venv is not up to date with pyproject.toml: run `make install`")
    root.mkdir(parents=True, exist_ok=True)
    for name in CHECKOUT_LINKS + more:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(REPO / name)
    return root


def page_environment(venv_bin: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The user's shell: `.venv` activated, no colours, a fixed terminal width for rich's tables."""
    # A test run under `make test` inherits make's own variables; a user's shell has none, and with
    # them a nested make prints "Entering directory" lines the pages do not show.
    make_vars = {
        "MAKELEVEL",
        "MAKEFLAGS",
        "MFLAGS",
        "MAKEOVERRIDES",
        "MAKE_TERMOUT",
        "MAKE_TERMERR",
    }
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLOPS_", "PYTEST_")) and k not in make_vars
    }
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv_bin.parent),
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="120",
        PYTHONUNBUFFERED="1",
    )
    return env | (extra or {})


def split_commands(block: str) -> list[Command]:
    commands: list[Command] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if commands:
                commands[-1].want += line + "\n"
            elif line.strip():
                raise ValueError(f"console block starts with output, not a `$ ` command: {line!r}")
            i += 1
            continue
        typed = [line[2:]]
        while typed[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            typed.append(lines[i])
        commands.append(Command("\n".join(typed), ""))
        i += 1
    return commands


def _matches(want: str, got: str) -> bool:
    """doctest's ELLIPSIS on text whose runs of whitespace are one space, and which begins and ends
    with one, so that `...` before a line matches the spaces rich centres a title with."""
    want, got = " ".join(want.split()), f" {' '.join(got.split())} "
    want = ("" if want.startswith("...") else " ") + want + ("" if want.endswith("...") else " ")
    return doctest.OutputChecker().check_output(want, got, doctest.ELLIPSIS)


def _failure(cmd: Command, got: str, why: str) -> str:
    return f"$ {cmd.line}\n{why}\n--- the page shows:\n{cmd.want}--- it printed:\n{got}"


def run_command(shell: PageShell, cmd: Command) -> str | None:
    """Run one command; None when its output is what the page shows, else the difference."""
    if cmd.line in shell.done:
        return None
    if cmd.line.rstrip().endswith("&"):
        return _run_background(shell, cmd)
    if cmd.line.startswith("export "):
        return _export(shell, cmd)
    proc = subprocess.run(
        ["bash", "-c", cmd.line],
        cwd=shell.cwd,
        env=shell.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    got = _ANSI.sub("", proc.stdout.decode(errors="replace"))
    if RECORD:  # writing a page: keep what each command printed, compare nothing
        with open(RECORD, "a") as out:
            out.write(f"$ {cmd.line}\n{got}[exit {proc.returncode}]\n")
        return None
    if proc.returncode != 0 and not cmd.want.lstrip().startswith(SHOWN_ERRORS):
        return _failure(cmd, got, f"exit status {proc.returncode}")
    if not _matches(cmd.want, got):
        return _failure(cmd, got, "the output differs")
    return None


def _export(shell: PageShell, cmd: Command) -> str | None:
    """Run the export in bash and keep the environment it leaves for the page's next commands."""
    proc = subprocess.run(
        ["bash", "-c", f"{cmd.line}\nenv -0"],
        cwd=shell.cwd,
        env=shell.env,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        return _failure(cmd, proc.stderr.decode(errors="replace"), f"exit {proc.returncode}")
    pairs = (item.split("=", 1) for item in proc.stdout.decode().split("\0") if "=" in item)
    shell.env = {k: v for k, v in pairs if k not in {"SHLVL", "_", "PWD", "OLDPWD"}}
    return None


def _run_background(shell: PageShell, cmd: Command) -> str | None:
    log = shell.cwd / f".background-{len(shell.background)}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {cmd.line.rstrip().removesuffix('&')}"],
            cwd=shell.cwd,
            env=shell.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    shell.background.append(proc)
    if RECORD:
        time.sleep(20)
        with open(RECORD, "a") as out:
            out.write(f"$ {cmd.line}\n{log.read_text(errors='replace')}[background]\n")
        return None
    deadline = time.monotonic() + BACKGROUND_WAIT_S
    got = ""
    while time.monotonic() < deadline:
        got = _ANSI.sub("", log.read_text(errors="replace"))
        if _matches(cmd.want, got):
            return None
        if proc.poll() is not None:
            return _failure(cmd, got, f"stopped with exit status {proc.returncode}")
        time.sleep(0.5)
    return _failure(cmd, got, f"not shown within {BACKGROUND_WAIT_S} s")


class ConsoleBlockParser(CodeBlockParser):
    """```console blocks; the page's `PageShell` is in the document's namespace as `shell`."""

    language = "console"

    def evaluate(self, example: Example) -> str | None:
        shell: PageShell = example.namespace["shell"]
        for cmd in split_commands(str(example.parsed)):
            failure = run_command(shell, cmd)
            if failure is not None:
                return failure
        return None


def run_page(path: Path, shell: PageShell) -> None:
    """Run every console block of one page, in order, in `shell`; raises on the first mismatch."""
    document = Sybil(parsers=[ConsoleBlockParser()]).parse(path)
    document.namespace["shell"] = shell
    try:
        for example in document.examples():
            example.evaluate()
    finally:
        shell.stop_background()


def page_commands(path: Path) -> list[Command]:
    """Every command of a page's console blocks, in order (for a test that runs some of them)."""
    document = Sybil(parsers=[ConsoleBlockParser()]).parse(path)
    return [cmd for example in document.examples() for cmd in split_commands(str(example.parsed))]


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
