"""Static checks: Sphinx builds without warnings, ruff and mypy are clean, reST is plain.

ruff and mypy read their settings from ``pyproject.toml``.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(argv, timeout):
    done = subprocess.run([sys.executable, "-m"] + [str(arg) for arg in argv], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, timeout=timeout)
    return done.returncode, done.stdout.decode("utf-8", "replace")


def needs(module):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason="%s is not installed" % module)


@needs("sphinx")
def test_sphinx_docs_build_without_warnings(tmp_path):
    """-W turns every warning into an error; -E ignores any earlier build."""
    code, output = run(["sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
                        "-d", tmp_path / "doctrees", "docs", tmp_path / "html"], timeout=240)
    assert code == 0, output
    api = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    for name in ("green_happybase.ConnectionPool.connection", "green_happybase.PoolExhausted",
                 "green_happybase.config.configure", "green_happybase.testing.HBaseServer",
                 "green_happybase.prometheus.register"):
        assert 'id="%s"' % name in api, name


@needs("ruff")
def test_ruff_is_clean_on_the_package_tests_examples_and_docs():
    code, output = run(["ruff", "check", "--no-cache", "green_happybase", "tests", "examples",
                        "docs", "setup.py"], timeout=120)
    assert code == 0, output


@needs("mypy")
def test_mypy_strict_is_clean_on_the_package_and_examples(tmp_path):
    code, output = run(["mypy", "--cache-dir", tmp_path / "mypy", "green_happybase",
                        "examples/crawler.py", "examples/locustfile.py",
                        "examples/gunicorn/app.py", "examples/gunicorn/gunicorn.conf.py"],
                       timeout=240)
    assert code == 0, output


@needs("docutils")
@pytest.mark.parametrize("path", ["README.rst", "CHANGELOG.rst"])
def test_readme_is_plain_rest_that_pypi_can_render(path):
    """PyPI renders the README with docutils alone: no Sphinx roles or directives.

    The changelog keeps to the same rule, so that it can join the README.
    """
    from docutils.core import publish_doctree
    from docutils.utils import SystemMessage

    text = (ROOT / path).read_text(encoding="utf-8")
    try:
        publish_doctree(text, settings_overrides={
            "report_level": 2, "halt_level": 2, "warning_stream": False})
    except SystemMessage as error:
        pytest.fail("%s: %s" % (path, error))
