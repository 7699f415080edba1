"""The finance operations console (issue 11): a server-rendered web application over the
projection (PostgreSQL) for finance, support and operations.

- :mod:`streams.console.app`: the aiohttp application (``create_app(ConsoleConfig)``),
  its middlewares (security headers, sessions, CSRF) and login;
- :mod:`streams.console.context`: configuration, database access, rendering;
- :mod:`streams.console.pages`: the pages and the two actions (redrive, period close);
- :mod:`streams.console.auth`: passwords (scrypt), session and CSRF tokens, roles (pure);
- :mod:`streams.console.store`: the console's tables (users, sessions, audit);
- :mod:`streams.console.timeline`: a customer's timeline;
- :mod:`streams.console.operations`: stuck work, reconciliation, periods, health, charts;
- :mod:`streams.console.charts`: the SVG charts;
- :mod:`streams.console.cli`: ``revledger console serve | user add``.

How to run it, roles and security: docs/CONSOLE.md. Must not import faust.
"""
