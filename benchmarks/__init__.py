"""Benchmarks of revledger: figures measured side by side, printed next to their targets.

Run ``python -m benchmarks.run`` (``make bench``); ``--quick`` for a smoke run,
``--only NAME`` for one benchmark. Nothing here is a test: figures are reported, not asserted.
"""
