"""The release artefacts: an sdist and a wheel that twine accepts, each complete.

One build per module (``python -m build --no-isolation``, which makes the
sdist and then the wheel from that sdist, so a file the sdist forgot breaks
the wheel too), into a temporary directory.
"""

import email.parser
import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import green_happybase
from poolkit import ask, balanced, fill_table, make_pool

ROOT = Path(__file__).resolve().parents[1]


def run(argv, cwd=ROOT, env=None, timeout=300):
    done = subprocess.run([str(arg) for arg in argv], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, timeout=timeout)
    output = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, "%s:\n%s" % (argv, output)
    return output


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """``(sdist, wheel)`` paths."""
    for name in ("build", "twine"):
        if importlib.util.find_spec(name) is None:
            pytest.skip("%s is not installed (it is in the test extra)" % name)
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT])
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, list(out.iterdir())
    return sdists[0], wheels[0]


def sdist_names(sdist):
    """Paths inside the sdist, without its top directory."""
    with tarfile.open(sdist) as tar:
        return {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}


def test_twine_accepts_the_sdist_and_the_wheel(dist):
    run([sys.executable, "-m", "twine", "check", "--strict", *dist])


def test_the_version_is_the_package_version_everywhere(dist):
    sdist, wheel = dist
    version = green_happybase.__version__
    assert sdist.name == "green_happybase-%s.tar.gz" % version
    assert wheel.name.startswith("green_happybase-%s-py3-" % version)


def test_the_sdist_ships_the_license_and_everything_its_tests_need(dist):
    names = sdist_names(dist[0])
    expected = {"LICENSE", "CHANGELOG.rst", "README.rst", "pyproject.toml", "setup.py",
                "MANIFEST.in", "Makefile", "tests/conftest.py", "tests/poolkit.py",
                "green_happybase/py.typed"}
    # Every test module and helper, example and documentation source.
    for pattern in ("tests/*.py", "examples/**/*.py", "docs/*.rst", "docs/conf.py"):
        expected.update(str(path.relative_to(ROOT)) for path in ROOT.glob(pattern))
    assert expected <= names, sorted(expected - names)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_wheel_holds_the_typed_package_its_license_and_pytest_plugin(dist):
    with zipfile.ZipFile(dist[1]) as wheel:
        names = set(wheel.namelist())
        info = next(name.split("/")[0] for name in names if ".dist-info/" in name)
        metadata = email.parser.Parser().parsestr(
            wheel.read(info + "/METADATA").decode("utf-8"))
        entry_points = wheel.read(info + "/entry_points.txt").decode("utf-8")
    assert {"green_happybase/__init__.py", "green_happybase/_version.py",
            "green_happybase/py.typed", info + "/licenses/LICENSE"} <= names
    assert not [name for name in names if name.startswith(("tests/", "examples/", "docs/"))]
    assert metadata["Version"] == green_happybase.__version__
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.11"
    assert any(req.startswith("thriftpy2>=") for req in metadata.get_all("Requires-Dist"))
    assert set(metadata.get_all("Provides-Extra")) >= {
        "test", "kerberos", "kerberos-test", "otel", "prometheus"}
    assert "[pytest11]\ngreen_happybase = green_happybase.testing.plugin" in entry_points


def test_the_suite_helpers_serve_a_pool(hbase_server):
    """conftest.py, poolkit.py and the pytest plugin's fixture work together.

    The unpacked sdist runs this test on its own copies of them.
    """
    pool = make_pool(hbase_server)
    fill_table(pool)
    assert all(ask(pool, key) for key in range(3))
    assert balanced(pool)


def test_the_unpacked_sdist_runs_its_own_tests(dist, tmp_path):
    """The sdist's tests run on its own package, conftest and helpers."""
    with tarfile.open(dist[0]) as tar:
        tar.extractall(tmp_path, filter="data")
    (source,) = tmp_path.iterdir()
    # The sdist's package comes first on the path, ahead of the editable install.
    env = dict(os.environ, PYTHONPATH=str(source))
    where = run([sys.executable, "-c", "import green_happybase; print(green_happybase.__file__)"],
                cwd=source, env=env)
    assert Path(where.strip()).is_relative_to(source), where
    output = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  "tests/test_packaging.py::test_the_suite_helpers_serve_a_pool"],
                 cwd=source, env=env)
    assert "1 passed" in output, output
