"""The README's two set-up commands stay true: CI runs exactly the README's test command. The README
stays a quick start; the manual is the documentation site (docs/)."""

import re

from tests.conftest import REPO_ROOT


def _readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README must start with a bash block holding the two commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_has_main_and_test_command():
    commands = _readme_commands()
    assert len(commands) == 2
    assert "python -m simulator" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in [line.strip() for line in ci_lines]


def test_readme_is_a_quick_start():
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    assert lines[2] == "```bash", "the two commands come first"
