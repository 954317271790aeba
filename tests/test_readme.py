"""The README's commands exist (its code blocks run in tests/test_docs.py)."""

from __future__ import annotations

from helpers import repo_root


def test_readme_commands_exist() -> None:
    readme = (repo_root() / "README.md").read_text()
    ci = (repo_root() / ".ci" / "run").read_text()
    assert "./scripts/test" in readme.split("\n## ")[0]
    assert "./scripts/demo" in readme.split("\n## ")[0]
    assert "./scripts/test" in ci
