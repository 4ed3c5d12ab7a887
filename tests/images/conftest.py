"""Real images on a real Docker engine: the session starts dockerd where it can
(hack/ensure-docker.sh), builds the local Debian base image (hack/build-base-image.sh, cached by
tag), the offline wheelhouse (hack/wheelhouse.sh) and the project's images on that base.

Each phase's seconds and each image's size are printed at the end of the session.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.images.image_build import BASE_IMAGE, ROOT, SIZES_MB, TIMINGS, Images, must, run_script


@pytest.fixture(scope="session")
def docker_engine() -> None:
    result = run_script("ensure docker", ["bash", "hack/ensure-docker.sh"])
    if result.returncode == 3:
        pytest.skip(f"no Docker engine and cannot start one here: {result.stderr.strip()}")
    if result.returncode != 0:
        pytest.fail(f"hack/ensure-docker.sh failed:\n{result.stderr}")


@pytest.fixture(scope="session")
def images(docker_engine: None) -> Images:
    rev = (
        subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        or "dev"
    )
    tag = f"test-{rev}"
    built = Images(
        f"mlops-platform/components:{tag}",
        f"mlops-platform/serving:{tag}",
        f"mlops-platform/online-store:{tag}",
    )
    must("base image", ["bash", "hack/build-base-image.sh", BASE_IMAGE])
    must("wheelhouse", ["bash", "hack/wheelhouse.sh"], PYTHON_BIN=sys.executable)
    for label, dockerfile, name in (
        ("build components image", "docker/components.Dockerfile", built.components),
        ("build serving image", "docker/serving.Dockerfile", built.serving),
        ("build online store image", "docker/online-store.Dockerfile", built.online_store),
    ):
        must(
            label,
            [
                "docker",
                "build",
                "-q",
                "-f",
                dockerfile,
                "--build-arg",
                f"BASE_IMAGE={BASE_IMAGE}",
                "-t",
                name,
                ".",
            ],
        )
    return built


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if TIMINGS:
        terminalreporter.section("docker image timings")
        for label, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{label:<28} {seconds:8.1f} s")
        for image, mb in SIZES_MB.items():
            terminalreporter.write_line(f"{image:<28} {mb:8.0f} MB")
