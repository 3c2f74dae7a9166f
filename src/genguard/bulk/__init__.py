"""Bulk generation: ``genguard batch`` and :func:`genguard.batch`.

Input readers and validation (``inputs``), the durable journal (``journal``: SQLite here, PostgreSQL beside it
later, one interface), the adaptive rate limiter (``limiter``: pure decisions), the runner (``runner``), the
output files (``outputs``) and the HTML report (``report``). The package is ``bulk`` rather than ``batch`` so
that importing it never shadows the ``genguard.batch`` function.
"""
