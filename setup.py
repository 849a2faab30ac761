from setuptools import find_packages, setup

with open("README.rst", encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="green_happybase",
    version="0.1.0",
    description="A gevent-native connection pool for HappyBase (HBase over Thrift)",
    long_description=long_description,
    long_description_content_type="text/x-rst",
    license="MIT",
    packages=find_packages(include=["green_happybase", "green_happybase.*"]),
    package_data={"green_happybase": ["py.typed"]},
    python_requires=">=3.8",
    install_requires=["happybase>=1.2", "gevent>=21.1"],
    extras_require={
        "prometheus": ["prometheus_client>=0.16"],
        "test": [
            "pytest>=7",
            "gunicorn[gevent]>=21",
            "locust>=2.20",
            "prometheus_client>=0.16",
            "mypy>=1.5",
            "types-gevent",
            "sphinx>=7",
            "hypothesis>=6.90",
            "trustme>=1.1",
            "opentelemetry-api>=1.20",
            "opentelemetry-sdk>=1.20",
            "ruff>=0.5",
            "build>=1.0",
            "twine>=5",
        ],
        # Real Kerberos: python-gssapi builds against libkrb5-dev; the tests
        # also need an MIT KDC (krb5-kdc, krb5-admin-server) for k5test.
        "kerberos": ["gssapi>=1.8"],
        "kerberos-test": ["gssapi>=1.8", "k5test>=0.10"],
        "otel": ["opentelemetry-api>=1.20"],
    },
    entry_points={"pytest11": ["green_happybase = green_happybase.testing.plugin"]},
    classifiers=[
        "Framework :: Pytest",
        "Programming Language :: Python :: 3",
        "Topic :: Database",
    ],
)
