"""No module of the package is over 450 lines (CHANGELOG says so; one concept per module)."""

from tests.conftest import REPO_ROOT

LIMIT = 450


def test_no_module_is_over_the_limit():
    sizes = {path.relative_to(REPO_ROOT).as_posix(): len(path.read_text().splitlines())
             for folder in ("simulator", "channels") for path in (REPO_ROOT / folder).rglob("*.py")}
    over = {path: lines for path, lines in sizes.items() if lines > LIMIT}
    assert not over, f"modules over {LIMIT} lines: {over}"
