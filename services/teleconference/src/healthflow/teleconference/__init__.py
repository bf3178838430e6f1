"""The teleconference service.

Modules, as in every service: ``manifest`` (how it declares itself), ``settings``,
``app`` (composition root), ``api`` (thin routes), ``service`` (use cases: checks,
one transaction, events), ``store`` (collections, indexes, queries), ``domain``
(pure rules), ``schemas`` (request and response bodies), ``events`` (what it
publishes), ``handlers`` (what it consumes).
"""
