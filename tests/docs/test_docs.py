"""The documentation site: it builds in strict mode, and every page's commands do what it says.

One test per page (docs/**/*.md): the page's ```console blocks run in order in one scratch
checkout (tests/docs/console_blocks.py). Pages marked `run: kind` in their front matter are the
cluster's: here they skip, saying which test runs them on the cluster (CLUSTER_PAGES), or that
none does yet.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.console_blocks import (
    DOCS,
    REPO,
    PageShell,
    page_commands,
    page_environment,
    page_front_matter,
    pages,
    run_page,
    scratch_checkout,
)

# `make demo`'s rows in a page: the fewest with which the loop stage reliably promotes its v2
# (tests/mlops_demo/test_drift_loop.py uses the same); a page's own commands pass --rows.
DOC_ENV = {"ROWS": "8000"}
RUN_MODES = ("local", "kind", "none")
# The cluster pages a test runs, block by block, on the kind cluster with KFP.
CLUSTER_PAGES = {
    "canary-cluster.md": "tests/kfp/test_journey.py",
    "cluster.md": "tests/kind/cluster_fixture.py (its setup command) and tests/kfp/test_journey.py",
    "control-plane.md": "tests/kfp/test_journey.py",
    "features-cluster.md": "tests/kfp/test_features_on_kfp.py",
    "journey.md": "tests/kfp/test_journey.py",
    "kfp.md": "tests/kfp/test_journey.py",
}
# `make docs`' command: -W turns every warning into an error.
SPHINX_STRICT = (sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html")


def _mode(page: Path) -> str:
    mode = str(page_front_matter(page).get("run", "local"))
    assert mode in RUN_MODES, f"{page}: front matter `run: {mode}`, expected one of {RUN_MODES}"
    return mode


def _params() -> list[object]:
    out = []
    for page in pages():
        name = str(page.relative_to(DOCS))
        mode = _mode(page)
        marks = [pytest.mark.slow] + ([pytest.mark.kind] if mode == "kind" else [])
        out.append(pytest.param(page, mode, id=name, marks=marks))
    return out


@pytest.mark.parametrize(("page", "mode"), _params())
def test_page_commands(page: Path, mode: str, tmp_path: Path) -> None:
    if mode == "none":
        pytest.skip(f"{page.name}: `run: none`, no commands to run")
    if mode == "kind":
        runner = CLUSTER_PAGES.get(page.name)
        pytest.skip(
            f"{page.name}: a cluster page; {runner} runs it on the KFP cluster"
            if runner
            else f"{page.name}: a cluster page that no test runs whole on a cluster yet"
        )
    shell = PageShell(
        cwd=scratch_checkout(tmp_path / "checkout"),
        env=page_environment(REPO / ".venv" / "bin", DOC_ENV),
    )
    run_page(page, shell)


def test_every_command_block_is_run() -> None:
    """A shell block in any other language would be a command no test runs: pages use ```console
    (run) or ```text (a synopsis or output, not typed as is)."""
    fence = re.compile(r"^(`{3,}|~{3,})\s*(bash|sh|shell|zsh|shell-session)\b", re.MULTILINE)
    offenders = [str(p.relative_to(REPO)) for p in pages() if fence.search(p.read_text())]
    assert not offenders, f"shell blocks no test runs (use ```console): {offenders}"


def test_every_console_block_is_commands_and_their_output() -> None:
    """Every page's ```console blocks, those of the cluster pages and `run: none` pages too, read
    as commands (`$ ...`) and what they print: a block of output alone belongs in ```text."""
    for page in pages():
        for cmd in page_commands(page):
            assert cmd.line.strip(), f"{page.name}: an empty command"


def test_docs_build_strict(tmp_path: Path) -> None:
    """`make docs`: a broken link, a missing cross-reference or a page not in the nav fails."""
    proc = subprocess.run(
        [*SPHINX_STRICT, str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "html" / "index.html").exists()


def test_quoted_figures_come_from_benchmark_output() -> None:
    """A figure in a page is a `{{ file.key }}` substitution of docs/figures/<file>.json; each
    substitution names a value that exists there."""
    figures = {
        p.stem.replace("-", "_"): json.loads(p.read_text())
        for p in (DOCS / "figures").glob("*.json")
    }
    substitution = re.compile(r"\{\{(.*?)\}\}")
    dotted = re.compile(r"\b([a-z_]+)((?:\.[A-Za-z0-9_]+)+)")
    for page in pages():
        text = re.sub(r"`[^`\n]*`", "", page.read_text())  # inline code is not filled in
        for expr in substitution.findall(text):
            for name, path in dotted.findall(expr):
                assert name in figures, f"{page.name}: {name}{path}: no docs/figures/{name}.json"
                value: object = figures[name]
                for key in path.strip(".").split("."):
                    assert isinstance(value, dict) and key in value, f"{page.name}: {name}{path}"
                    value = value[key]
                assert isinstance(value, int | float), f"{page.name}: {name}{path} is no figure"


def test_readme_is_short_and_points_into_the_docs() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / link).exists(), f"README links to {link}, which does not exist"
