"""HBase's errors, worded as its Thrift1 gateway words them, in one place.

The gateway (``ThriftHBaseServiceHandler`` behind libthrift's processor)
answers in four ways, and so does the embedded server:

- a declared ``IOError`` or ``IllegalArgument``, whose message is the first
  line of the Java stack trace HBase puts there (``java.io.IOException: ...``);
- ``AlreadyExists`` from ``createTable``;
- ``TApplicationException(INTERNAL_ERROR, "Internal error processing
  <method>")`` for a Java exception the handler does not catch (most
  ``IllegalArgumentException``\\ s): raise :class:`Unchecked` for those, and the
  processor answers exactly that text, keeping the Java detail for its log;
- ``TApplicationException(UNKNOWN_METHOD, "Invalid method name: '<name>'")``.

Where the embedded server knowingly answers differently, :func:`deviation`
builds an ``IOError`` whose message says so.

.. versionadded:: 0.2
"""
from __future__ import annotations

import happybase  # noqa: F401  (loads the Hbase_thrift module)
from Hbase_thrift import IllegalArgument
from Hbase_thrift import IOError as HBaseIOError
from thriftpy2.thrift import TApplicationException

__all__ = [
    "HBaseIOError", "Unchecked", "binary", "deviation", "illegal_argument", "internal_error",
    "io_error", "no_such_family", "not_serving_region", "scanner_invalid", "table_not_disabled",
    "table_not_enabled", "table_not_found", "unknown_method",
]

_IAE = "java.lang.IllegalArgumentException"


class Unchecked(Exception):
    """A Java exception the gateway's handler lets escape.

    HBase's Thrift processor answers it with
    ``TApplicationException(INTERNAL_ERROR, "Internal error processing
    <method>")``; the Java class and message only reach the gateway's log.
    """

    def __init__(self, message: str, java_class: str = _IAE) -> None:
        super().__init__("%s: %s" % (java_class, message))


def binary(data: bytes) -> str:
    """``Bytes.toStringBinary``: printable ASCII as is, the rest as ``\\xHH``."""
    return "".join(chr(b) if 32 <= b < 127 and b != 92 else "\\x%02X" % b for b in data)


def io_error(java_class: str, message: str) -> HBaseIOError:
    return HBaseIOError(message="%s: %s" % (java_class, message))


def illegal_argument(message: str) -> IllegalArgument:
    """What the handler sends for an ``IllegalArgumentException`` it catches."""
    return IllegalArgument(message="%s: %s" % (_IAE, message))


def scanner_invalid() -> IllegalArgument:
    return IllegalArgument(message="scanner ID is invalid")


def table_not_found(name: bytes) -> HBaseIOError:
    return io_error("org.apache.hadoop.hbase.TableNotFoundException", binary(name))


def table_not_enabled(name: bytes, disabled_text: bool = False) -> HBaseIOError:
    """``TableNotEnabledException``: ``"t is disabled."`` on reads and writes,
    the bare name from ``disableTable``."""
    text = binary(name) + (" is disabled." if disabled_text else "")
    return io_error("org.apache.hadoop.hbase.TableNotEnabledException", text)


def table_not_disabled(name: bytes) -> HBaseIOError:
    return io_error("org.apache.hadoop.hbase.TableNotDisabledException", binary(name))


def no_such_family(family: bytes, region: bytes, table: bytes) -> HBaseIOError:
    return io_error(
        "org.apache.hadoop.hbase.regionserver.NoSuchColumnFamilyException",
        "Column family %s does not exist in region %s in table '%s'"
        % (binary(family), binary(region), binary(table)),
    )


def not_serving_region(region: bytes) -> HBaseIOError:
    return io_error("org.apache.hadoop.hbase.NotServingRegionException",
                    "%s is not online" % binary(region))


def internal_error(method: str) -> TApplicationException:
    """libthrift's answer to an exception the handler did not catch."""
    return TApplicationException(TApplicationException.INTERNAL_ERROR,
                                 "Internal error processing %s" % method)


def unknown_method(name: str) -> TApplicationException:
    return TApplicationException(TApplicationException.UNKNOWN_METHOD,
                                 "Invalid method name: '%s'" % name)


def deviation(problem: str, hbase_answer: str) -> HBaseIOError:
    """An ``IOError`` for a case the embedded server handles unlike HBase.

    :param problem: what is wrong with the request, as the user should read it
    :param hbase_answer: what HBase's gateway would do instead
    """
    return HBaseIOError(message="%s (embedded HBase server; HBase's gateway %s)"
                        % (problem, hbase_answer))
