"""Building blocks of inner sessions: a pytest.ini, conftests with a real HTTP server or the user's
own tracer provider, and the attributes the plugin stamps on spans."""

from __future__ import annotations

import textwrap

EVALROWS_KEYS = (
    "evalrows.attempt_id",
    "evalrows.row_id",
    "evalrows.experiment",
    "evalrows.execution",
)

# A pytest.ini makes the inner rootdir (and so row ids and the default store) stable.
INI = "[pytest]\n"

# A real HTTP server on 127.0.0.1 (port 0) and real httpx instrumentation, for inner conftests.
SERVER_CONFTEST = textwrap.dedent(
    """
    import http.server
    import threading

    import pytest
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument()


    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass


    @pytest.fixture(scope="session")
    def server_url():
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        server.server_close()
        thread.join()
    """
)

# The user's own provider and exporter, configured in conftest.py. What the exporter got is
# dumped at session finish; a span started after the plugin is done shows whether the
# provider still works (the plugin must never shut it down).
USER_PROVIDER_CONFTEST = textwrap.dedent(
    """
    import json
    import pathlib

    import pytest
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    HERE = pathlib.Path(__file__).parent
    EXPORTER = InMemorySpanExporter()
    PROVIDER = TracerProvider()
    PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(PROVIDER)


    def _exported():
        return [
            {
                "name": span.name,
                "span_id": format(span.context.span_id, "016x"),
                "attributes": dict(span.attributes or {}),
            }
            for span in EXPORTER.get_finished_spans()
        ]


    def pytest_sessionfinish(session):
        (HERE / "exported.json").write_text(json.dumps(_exported()))


    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(config):
        with trace.get_tracer("after").start_as_current_span("after-session"):
            pass
        (HERE / "after.json").write_text(
            json.dumps(
                {
                    "names": [span["name"] for span in _exported()],
                    "provider_is_global": trace.get_tracer_provider() is PROVIDER,
                }
            )
        )
    """
)
