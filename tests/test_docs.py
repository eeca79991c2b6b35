"""The documentation stays true to the code: the scenario-key reference is generated from the
scenario's pydantic models and up to date, every scenario key is named in docs/, every column of
metrics.parquet is explained, and every page is in the site's navigation. (The site itself is built strictly by CI,
.ci/run, which needs the docs extra.)"""

import re

import pytest
import yaml

from tests.conftest import REPO_ROOT, load_script

DOCS = REPO_ROOT / "docs"


@pytest.fixture(scope="module")
def generator():
    return load_script("gen_scenario_reference")


def test_scenario_key_reference_is_generated_from_the_models(generator):
    page = DOCS / "reference" / "scenario-keys.md"
    assert page.read_text() == generator.render(), "run python scripts/gen_scenario_reference.py"
    assert generator.main(["--check"]) == 0


def test_every_scenario_key_is_named_in_the_docs(generator):
    keys = generator.scenario_keys()
    # Nested sections included: a leaf of each kind of nesting (section, list of settings).
    assert {"num_users", "channel.params", "traffic.shared_task_probability", "adaptation.budget"} <= set(keys)
    text = "\n".join(p.read_text() for p in DOCS.rglob("*.md"))
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"scenario keys not in docs/: {missing}"


def test_a_new_field_makes_the_reference_stale(generator, monkeypatch):
    from pydantic import Field, create_model

    from simulator.scenario import Scenario

    extended = create_model("Extended", __base__=Scenario, new_key=(int, Field(default=1, ge=0, description="new")))
    monkeypatch.setattr(generator, "Scenario", extended)
    assert "| `new_key` | int | `1` | >= 0 | new |" in generator.render()
    assert generator.main(["--check"]) == 1


def test_every_docs_page_is_in_the_navigation():
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())
    nav = set(re.findall(r"[\w/-]+\.md", str(config["nav"])))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages == nav


def test_every_metrics_column_is_explained():
    from simulator.results import COLUMNS

    page = (DOCS / "main-job.md").read_text()
    missing = [c for c in COLUMNS if f"`{c}`" not in page]
    assert not missing, f"metrics.parquet columns not in docs/main-job.md: {missing}"
