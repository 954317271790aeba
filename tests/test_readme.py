"""The README's example runs as written (on a free port instead of 8765)."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers import repo_root, timeout


def test_readme_example_runs() -> None:
    readme = (repo_root() / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    assert code is not None
    source = code.group(1).replace('"127.0.0.1", 8765', '"127.0.0.1", 0')
    result = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=timeout(20)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n"


def test_readme_commands_exist() -> None:
    readme = (repo_root() / "README.md").read_text()
    ci = (repo_root() / ".ci" / "run").read_text()
    assert "./scripts/test" in readme.split("\n## ")[0]
    assert "./scripts/demo" in readme.split("\n## ")[0]
    assert "./scripts/test" in ci
