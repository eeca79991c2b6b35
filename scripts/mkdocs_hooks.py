"""MkDocs hooks (mkdocs.yml ``hooks:``).

- Publish the reference figures of ``results/reference/`` with the site, under
  ``reference-figures/``, so that the pages show the figures kept in git without a copy under ``docs/``.
- The docstrings name code with Sphinx roles (``:class:`X```, ``:func:`~a.b```), which Markdown renders
  as the role's text followed by the name in code; the API pages show the name alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

FIGURES = Path(__file__).resolve().parents[1] / "results" / "reference"
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>~?")


def on_files(files, config):
    for figure in sorted(FIGURES.glob("*.png")):
        files.append(File.generated(config, f"reference-figures/{figure.name}", abs_src_path=str(figure)))
    return files


def on_page_content(html, page, config, files):
    return _ROLE.sub("<code>", html)
