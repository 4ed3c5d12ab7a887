"""kfp.local tasks forked from the pre-warmed server: each task its own process, same results,
failures still fail, and a missing server falls back to a fresh interpreter."""

import os
import sys
from pathlib import Path

import kfp.local
import pytest
from kfp import dsl

from pipelines.task_forkserver import task_fork_server


def where_am_i(tag: str) -> str:
    import os

    return f"{tag}:{os.getpid()}:{os.getppid()}:{os.environ.get('FORK_TEST', '')}"


def fail(tag: str) -> str:
    raise ValueError(f"task {tag} fails on purpose")


def _component(body):
    return dsl.component(body, base_image="python:3.11", install_kfp_package=False)


@dsl.pipeline(name="fork-test")
def two_tasks() -> str:
    first = _component(where_am_i)(tag="a")
    second = _component(where_am_i)(tag="b").after(first)
    return second.output


@dsl.pipeline(name="fork-fail")
def failing() -> str:
    return _component(fail)(tag="x").output


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FORK_TEST", "inherited")
    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path),
        raise_on_error=True,
    )
    return tmp_path


def test_tasks_are_forked_children_of_the_server(local: Path) -> None:
    real = sys.executable
    with task_fork_server(modules=("kfp.dsl.executor",)) as server:
        assert sys.executable != real  # kfp.local takes this for `python3`
        out = two_tasks().output
    assert sys.executable == real
    tag, pid, ppid, env = out.split(":")
    assert tag == "b" and env == "inherited"  # the task got the caller's environment
    assert int(ppid) == server and int(pid) != os.getpid()  # a child of the server


def test_a_failing_task_fails_the_run(local: Path) -> None:
    with task_fork_server(modules=("kfp.dsl.executor",)), pytest.raises(RuntimeError):
        failing()


def test_without_a_server_tasks_run_as_fresh_interpreters(local: Path) -> None:
    with task_fork_server(modules=("no_such_module_so_the_server_exits",)) as server:
        out = two_tasks().output
    tag, _, ppid, env = out.split(":")
    assert (tag, env) == ("b", "inherited") and int(ppid) != server
