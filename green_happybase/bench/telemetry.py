"""The OpenTelemetry SDK of the costs table, kept in memory.

Imported only by a child that measures it: the SDK is a test dependency.
"""

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = ["InMemorySdk"]

#: Spans the exporter keeps before it drops them: a bound on the memory
#: (and garbage collection) the SDK adds to the process.
_KEPT = 1000


class _CountingExporter(InMemorySpanExporter):
    """Keeps the latest spans, counts them all."""

    exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.exported % _KEPT + len(spans) > _KEPT:
            self.clear()
        self.exported += len(spans)
        return super().export(spans)


class InMemorySdk:
    """A meter provider with an in-memory reader, a tracer provider whose
    span processor exports each span as it ends to an in-memory exporter."""

    def __init__(self) -> None:
        self._reader = InMemoryMetricReader()
        self._exporter = _CountingExporter()
        self.meter_provider = MeterProvider(metric_readers=[self._reader])
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self._exporter))

    def report(self) -> dict[str, Any]:
        """Spans exported, and data points collected now."""
        data = self._reader.get_metrics_data()
        points = 0 if data is None else sum(
            len(metric.data.data_points) for resource in data.resource_metrics
            for scope in resource.scope_metrics for metric in scope.metrics)
        return {"spans": self._exporter.exported, "data_points": points}
