"""Helpers of the plugin's own tests, imported as ``support.<module>``: pytest puts ``tests/``
on ``sys.path`` (rootdir-relative ``prepend`` import mode, as ``tests/`` is no package).

- ``cli``: ``evalrows(...)``, the one way to run the ``evalrows`` command, and
  ``session_report(result)``, the counts a session saved, read back with it as JSON;
- ``output``: what an inner session printed: ``header``, ``read_summary`` (the one reader of
  the terminal summary), ``usage_error``;
- ``store``: rows, versions, attempts and spans read back from a SQLite store; ``make_row``;
- ``spool``: what sessions left in the spool, read independently of the plugin;
- ``sessions``: building blocks of inner sessions (``INI``, conftests);
- ``servers``: ``evalrows serve`` as a subprocess, a proxy that answers 429/503, a restart;
- ``fault_proxy``: a fault-injecting proxy (standalone: the benchmarks load it by path);
- ``events``: row and span events in the wire format;
- ``braintrust_contract``: Braintrust's OpenAPI contract and an in-memory stand-in;
- ``openai_standin``: a real OpenAI-compatible chat server on 127.0.0.1, in a thread, that
  counts what it is asked;
- ``traces``: row versions and traces built by hand, for judges;
- ``judge_project``: a store and a judges module for the ``evalrows judge`` commands.
- ``web_pages``: the web view's pages (``web.pages``) built by hand, for rendering;
- ``html_tree``: rendered HTML read back as a small tree, strict about nesting;
- ``web_report``: a store filled for ``evalrows report`` and the report file read back;
- ``sdk``: the Braintrust SDK run in a subprocess against ``evalrows serve`` (its
  environment, what it sent, merged as it merges);
- ``sdk_api``: the SDK's calls made in process (Starlette's ``TestClient``) over a store, and
  the events it sends;
- ``postgres``: a PostgreSQL server for the tests (``EVALROWS_TEST_POSTGRES``, or a throwaway
  cluster started on first use) and fresh databases on it.

No module here imports a test module.
"""
