"""Imported by an executor subprocess (``--import tests.multiprocess.span_file``): its
spans go, one JSON object per line, to the file named by ``$DYNFLOW_TEST_SPANS``,
through a global tracer provider of the OpenTelemetry SDK."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class JsonLines(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            assert span.context is not None
            lines.append(
                json.dumps(
                    {
                        "name": span.name,
                        "trace_id": format(span.context.trace_id, "032x"),
                        "span_id": format(span.context.span_id, "016x"),
                        "parent_id": None
                        if span.parent is None
                        else format(span.parent.span_id, "016x"),
                        "attributes": dict(span.attributes or {}),
                    }
                )
            )
        with self.lock, open(self.path, "a") as out:
            out.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS


_path = os.environ.get("DYNFLOW_TEST_SPANS")
if _path:
    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(JsonLines(_path)))
    trace.set_tracer_provider(_provider)
