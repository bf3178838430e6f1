"""Events the audit service publishes: none.

The audit service only consumes (every event, pattern ``#``). It deliberately
publishes nothing, not even for reads of its API: an event would be consumed
back into the log it describes, and each read of that entry would cause
another. Reads are recorded in the service log instead (see
:mod:`healthflow.audit.api`).
"""
