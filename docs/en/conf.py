"""Sphinx configuration of the wrs_mm manual (MyST Markdown pages and API
pages generated from the docstrings), as mmdet and mmengine build theirs.

    make docs      # = sphinx-build -W -b html docs/en docs/en/_build/html
"""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, ROOT)
with open(os.path.join(ROOT, 'wrs_mm', 'version.py')) as f:
    exec(f.read())

project = 'wrs_mm'
author = 'wrs_mm contributors'
copyright = '2026, wrs_mm contributors'
version = release = __version__  # noqa: F821 (wrs_mm/version.py)

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
    'sphinx_copybutton',
]
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
master_doc = 'index'
exclude_patterns = ['_build']
myst_heading_anchors = 4
myst_enable_extensions = ['dollarmath']
autodoc_member_order = 'bysource'
autodoc_default_options = dict(members=True, show_inheritance=True)
napoleon_google_docstring = True
# Furo, widened for config blocks and start-up tables (_static/wrs_mm.css);
# tests/test_docs_browser.py opens every page in Chromium and fails on a
# code block or table wider than its column
html_theme = 'furo'
html_title = 'wrs_mm'
html_static_path = ['_static']
html_css_files = ['wrs_mm.css']
# the copy button leaves out prompts and the outputs that follow them
copybutton_prompt_text = r'\$ '
copybutton_prompt_is_regexp = True
