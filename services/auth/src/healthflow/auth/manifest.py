"""The auth service's manifest (:mod:`healthflow.common.manifest`)."""

from __future__ import annotations

from healthflow.common.manifest import RouteDecl, ServiceManifest

MANIFEST = ServiceManifest(
    name="auth",
    port=8101,
    summary="Accounts, passwords, sessions, EdDSA access tokens and the JWKS.",
    routes=(
        RouteDecl("/api/v1/auth/token", policy="token"),
        RouteDecl("/api/v1/auth/register", policy="register"),
        RouteDecl("/api/v1/auth/refresh", policy="refresh"),
        # public, and as tightly limited per address as sign-ups (mail-bombing, guessing)
        RouteDecl("/api/v1/auth/password/reset", policy="register"),
        RouteDecl("/api/v1/auth/contact", policy="register"),  # e-mailed links
        RouteDecl("/api/v1/auth", policy="account"),
        RouteDecl("/api/v1/users", policy="account"),
        RouteDecl("/.well-known/jwks.json", policy="jwks"),
    ),
)
