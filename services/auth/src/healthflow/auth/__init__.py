"""HealthFlow auth service: accounts, passwords, sessions, access tokens and signing keys.

Entry points: :func:`healthflow.auth.app.create_app` (the FastAPI app),
``python -m healthflow.auth`` (serve, or a CLI command: see :mod:`healthflow.auth.cli`)
and :func:`healthflow.auth.cli.ensure_first_admin` (the platform runner's hook).
"""
