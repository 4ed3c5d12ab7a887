"""Sphinx configuration of the documentation site (`make docs`, built in strict mode: -W)."""

from __future__ import annotations

import json
from pathlib import Path

project = "mlops-platform"
author = "mlops-platform authors"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
# A missing link target or cross-reference is a warning, and -W makes every warning an error.
nitpicky = True
html_theme = "alabaster"
html_title = "mlops-platform"
html_static_path: list[str] = []
# `(page.md#heading)` links resolve to headings down to this depth.
myst_heading_anchors = 3
myst_enable_extensions = ["substitution", "deflist"]


def _figures() -> dict[str, object]:
    """Every benchmark figure a page quotes, as `{{ <file stem>.<key> }}`: the committed output
    of the benchmarks (docs/figures/<name>.json), never a number typed into a page."""
    figures: dict[str, object] = {}
    for path in sorted((Path(__file__).parent / "figures").glob("*.json")):
        figures[path.stem.replace("-", "_")] = json.loads(path.read_text())
    return figures


myst_substitutions = _figures()
