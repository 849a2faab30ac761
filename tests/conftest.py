import pytest

from poolkit import close_made_pools


@pytest.fixture(autouse=True)
def _close_pools():
    yield
    close_made_pools()
