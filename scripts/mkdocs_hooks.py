"""MkDocs hook (mkdocs.yml ``hooks:``): publish the reference figures of ``results/reference/`` with
the site, under ``reference-figures/``, so that the pages show the figures kept in git without a copy
of them under ``docs/``."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

FIGURES = Path(__file__).resolve().parents[1] / "results" / "reference"


def on_files(files, config):
    for figure in sorted(FIGURES.glob("*.png")):
        files.append(File.generated(config, f"reference-figures/{figure.name}", abs_src_path=str(figure)))
    return files
