"""An embedded HBase Thrift server for tests: ``HBaseServer``.

Run it from Python (``with HBaseServer() as server: ...``), from the shell
(``python -m green_happybase.testing --port 9090``), or through the pytest
fixtures ``hbase_server`` and ``hbase_pool``.
"""
from .server import HBaseServer

__all__ = ["HBaseServer"]
