"""Sphinx configuration: ``.venv/bin/sphinx-build -W --keep-going -E docs docs/_build``."""
import os
import sys

# The package is importable from a checkout even without an install.
sys.path.insert(0, os.path.abspath(".."))

import green_happybase

project = "green_happybase"
author = "the green_happybase developers"
copyright = "2026, the green_happybase developers"
release = version = green_happybase.__version__

extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autoclass_content = "class"

html_theme = "alabaster"
html_static_path: list = []
