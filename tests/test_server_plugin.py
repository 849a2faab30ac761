"""The pytest plugin: free until used, can be turned off, takes its options
from the ``hbase_server`` marker.

Isolation is checked in fresh interpreters and throwaway projects, the way a
user's unrelated project would meet the plugin.
"""
import subprocess
import sys
import textwrap

import pytest

from green_happybase.testing import HBaseServer

pytest_plugins = ["pytester"]

HEAVY = ("gevent", "ssl", "happybase", "thriftpy2")
MACHINERY = ["green_happybase.testing.%s" % name for name in (
    "server", "surface", "store", "wire", "filters", "regex", "watchdog", "faults", "errors",
    "gateways")]
# Other installed plugins, which are not under test here.
OTHERS = ["-p", "no:locust", "-p", "no:hypothesispytest", "-p", "no:cacheprovider"]


def imported_by(statement, names):
    """Which of ``names`` a fresh interpreter has imported after ``statement``."""
    code = "import sys\n%s\nprint(' '.join(n for n in %r if n in sys.modules))" % (
        statement, list(names))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.split()


def skip_if_the_package_itself_is_heavy():
    heavy = imported_by("import green_happybase", HEAVY)
    if heavy:
        pytest.skip("green_happybase/__init__.py itself imports %s: the plugin, inside the "
                    "package, cannot avoid them until that import is lazy" % ", ".join(heavy))


def test_importing_the_plugin_imports_no_machinery():
    assert imported_by("import green_happybase.testing.plugin", MACHINERY) == []
    skip_if_the_package_itself_is_heavy()
    assert imported_by("import green_happybase.testing.plugin", HEAVY) == []


def run_project(tmp_path, files, *args):
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", *OTHERS, *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_unrelated_gevent_project_with_warnings_as_errors_is_unaffected(tmp_path):
    """A project that monkey-patches in conftest.py and turns warnings into
    errors runs as if the plugin were not installed."""
    skip_if_the_package_itself_is_heavy()
    done = run_project(tmp_path, {
        "pytest.ini": """
            [pytest]
            filterwarnings =
                error
        """,
        "conftest.py": """
            from gevent import monkey

            monkey.patch_all()
        """,
        "test_unrelated.py": """
            def test_nothing_to_do_with_hbase():
                assert True
        """,
    })
    assert done.returncode == 0, done.stdout + done.stderr


def test_plugin_can_be_turned_off(tmp_path):
    files = {"test_uses_fixture.py": """
        def test_server(hbase_server):
            assert hbase_server.port > 0
    """}
    done = run_project(tmp_path, files)
    assert done.returncode == 0, done.stdout + done.stderr
    done = run_project(tmp_path, files, "-p", "no:green_happybase")
    assert done.returncode == 1
    assert "fixture 'hbase_server' not found" in done.stdout


@pytest.mark.hbase_server(idle_timeout=0.5, scanner_timeout=7.0, max_frame_size=4096,
                          transport="framed")
def test_marker_options_reach_the_server(hbase_server):
    assert isinstance(hbase_server, HBaseServer)
    assert (hbase_server.idle_timeout, hbase_server.scanner_timeout) == (0.5, 7.0)
    assert (hbase_server.max_frame_size, hbase_server.transport) == (4096, "framed")


def test_marker_mistakes_and_real_gateways(pytester, monkeypatch):
    """A misspelt option names itself; with a real gateway, a test that
    needs the embedded server's options is skipped."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hbase_server(idle_timeout=0.5)
        def test_needs_options(hbase_server):
            pass

        @pytest.mark.hbase_server(idle_timeot=0.5)
        def test_misspelt(hbase_server):
            pass
        """
    )
    result = pytester.runpytest("--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*unknown option(s) idle_timeot*"])
    with HBaseServer(subprocess=True) as gateway:
        monkeypatch.setenv("GREEN_HAPPYBASE_TEST_HOST", gateway.host)
        monkeypatch.setenv("GREEN_HAPPYBASE_TEST_PORT", str(gateway.port))
        result = pytester.runpytest("--strict-markers", "-p", "no:cacheprovider", "-k",
                                    "needs_options", "-rs")
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*needs the embedded server*"])
