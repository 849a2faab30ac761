"""The package's version, the one place it is written.

``pyproject.toml`` reads it at build time (``[tool.setuptools.dynamic]``), and
``green_happybase.__version__`` re-exports it, so a checkout, an editable
install and a built wheel all report the same version.
"""

__version__ = "0.2.0.dev0"
