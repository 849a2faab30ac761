import ssl

import pytest
import trustme

from poolkit import close_made_pools


@pytest.fixture(autouse=True)
def _close_pools():
    yield
    close_made_pools()


# A throwaway certificate authority for the TLS tests, and contexts that
# serve and trust a certificate it issued for 127.0.0.1 and localhost.
@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
