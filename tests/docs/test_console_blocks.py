"""How a page's command runs (tests/docs/console_blocks.py): what carries from one command to the
next, what a page may show for a command that fails, and a command a fixture already ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.console_blocks import REPO, PageShell, page_environment, run_page


def _page(tmp_path: Path, body: str, done: frozenset[str] = frozenset()) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# a page\n\n```console\n{body}```\n")
    shell = PageShell(cwd=tmp_path, env=page_environment(REPO / ".venv" / "bin"), done=done)
    run_page(page, shell)


def test_an_export_reaches_the_next_commands(tmp_path: Path) -> None:
    _page(tmp_path, '$ export NS=mlops ISVC=churn\n$ echo "$NS/$ISVC"\nmlops/churn\n')


def test_a_command_printing_other_than_the_page_fails(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="the output differs"):
        _page(tmp_path, "$ echo mlops/churn\nmlops/other\n")


def test_a_failing_command_passes_only_where_the_page_shows_its_error(tmp_path: Path) -> None:
    _page(tmp_path, "$ echo 'Error from server (Forbidden): no' && false\nError from server ...\n")
    with pytest.raises(Exception, match="exit status 1"):
        _page(tmp_path, "$ echo 'refused' && false\nrefused\n")


def test_a_command_a_fixture_ran_is_not_run_again(tmp_path: Path) -> None:
    _page(tmp_path, "$ false\n", done=frozenset({"false"}))
    with pytest.raises(Exception, match="exit status 1"):
        _page(tmp_path, "$ false\n")
