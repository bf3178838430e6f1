"""Access-token verification and permission dependencies for every service.

Each service verifies the bearer token itself against the auth service's
cached JWKS (defence in depth: the gateway checked it too). Rules (RFC 8725,
RFC 9068):

* only asymmetric algorithms (:data:`ALLOWED_ALGORITHMS`); ``none`` and every
  HMAC algorithm are refused, and the algorithm must match the key's type;
* a ``kid`` is required and must be in the JWKS (an unknown ``kid`` triggers
  one JWKS refresh, at most every 10 s, so rotated keys are picked up);
* ``iss`` and ``aud`` must match; ``exp``, ``iat``, ``sub`` and ``jti`` are
  required; expired and not-yet-valid (``nbf``/``iat`` in the future) tokens are
  refused, with :data:`LEEWAY_SECONDS` of clock skew;
* a token whose ``exp - iat`` exceeds ``max_lifetime`` seconds is refused (a
  leaked signing key cannot mint tokens that outlive every revocation entry);
* revocations (:class:`~healthflow.common.revocation.RevocationState`: revoked
  sessions by ``sid``, a per-user "not before" compared with ``iat``, revoked
  signing keys by ``kid``) are checked on every call, cached tokens included, and
  a cached token whose key has left the JWKS is refused.

Routes state what they need by parameter type: ``principal: Authenticated``, or
``principal: Principal = require(Permission.AUDIT_READ)``. A route without
either is visibly public.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import jwt
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from healthflow.common.errors import Forbidden, ServiceUnavailable, Unauthorized
from healthflow.common.revocation import RevocationState, until_refused

ALLOWED_ALGORITHMS = ("EdDSA", "ES256", "RS256")
_KTY_ALGORITHMS = {"OKP": {"EdDSA"}, "EC": {"ES256"}, "RSA": {"RS256"}}
LEEWAY_SECONDS = 30
JWKS_MIN_REFRESH_SECONDS = 10.0
VERIFIED_CACHE_SIZE = 10_000
DEFAULT_MAX_LIFETIME = 3600

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


@dataclass(frozen=True)
class Principal:
    """The verified caller: subject (user id), roles, permissions, token id."""

    subject: str
    roles: frozenset[str]
    permissions: frozenset[str]
    token_id: str
    token: str
    claims: dict[str, Any]
    kid: str = ""

    def has(self, permission: str) -> bool:
        return str(permission) in self.permissions

    def has_role(self, role: str) -> bool:
        return str(role) in self.roles

    @property
    def actor(self) -> str:
        """The CloudEvents ``actor`` for events this caller causes."""
        return self.subject


class TokenVerifier:
    """Verifies access tokens against a JWKS fetched from ``jwks_url`` (or given keys)."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        jwks: dict[str, Any] | None = None,
        cache_seconds: float = 300.0,
        max_lifetime: float = DEFAULT_MAX_LIFETIME,
        revocations: RevocationState | None = None,
    ) -> None:
        if jwks_url is None and jwks is None:
            raise ValueError("a JWKS URL or a JWKS is required")
        self.max_lifetime = max_lifetime
        self.revocations = revocations
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.cache_seconds = cache_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        # Tokens already verified, until they expire: a signature is checked once
        # per token, not once per request (the same token arrives many times).
        self._verified: OrderedDict[str, Principal] = OrderedDict()
        if jwks is not None:
            self._load(jwks)
            self._fetched_at = float("inf") if jwks_url is None else time.monotonic()

    def _load(self, jwks: dict[str, Any]) -> None:
        keys: dict[str, jwt.PyJWK] = {}
        for raw in jwks.get("keys", []):
            kid = raw.get("kid")
            if not kid or raw.get("kty") not in _KTY_ALGORITHMS:
                continue
            try:
                keys[kid] = jwt.PyJWK.from_dict(raw)
            except jwt.PyJWTError:
                continue
        self._keys = keys

    async def _refresh(self, *, force: bool) -> None:
        if self.jwks_url is None:
            return
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            # A key revoked since the last fetch means another key signs now: fetch again.
            key_revoked = (self.revocations is not None
                           and self.revocations.keys_revoked_at > self._fetched_at)
            if (not force and age < self.cache_seconds) or (
                force and age < JWKS_MIN_REFRESH_SECONDS and not key_revoked
            ):
                return
            try:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    response = await client.get(self.jwks_url)
                    response.raise_for_status()
                    self._load(response.json())
                    self._fetched_at = time.monotonic()
            except (httpx.HTTPError, ValueError):
                if not self._keys:
                    raise ServiceUnavailable(
                        "token keys are unavailable; try again shortly", retry_after=5
                    ) from None

    async def _key(self, kid: str) -> jwt.PyJWK:
        await self._refresh(force=False)
        key = self._keys.get(kid)
        if key is None:
            await self._refresh(force=True)
            key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("the token was signed by an unknown key")
        return key

    async def verify(self, token: str) -> Principal:
        """Verify ``token`` and return the caller.

        A token verified before is answered from a bounded cache until its ``exp``,
        unless it has been revoked or its key has left the key set since.

        Raises:
            Unauthorized: for any token that fails a rule above (401).
            ServiceUnavailable: when no keys could be fetched at all (503).
        """
        cached = self._verified.get(token)
        if cached is not None:
            refusal = self.refusal(cached)
            if refusal is None:
                self._verified.move_to_end(token)
                return cached
            del self._verified[token]
            raise Unauthorized(refusal)
        principal = await self._verify(token)
        refusal = self.refusal(principal)
        if refusal is not None:
            raise Unauthorized(refusal)
        self._verified[token] = principal
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def refusal(self, principal: Principal) -> str | None:
        """Why an already verified ``principal`` must be refused now (``None``: it stands).

        Expiry (with :data:`LEEWAY_SECONDS`), its key no longer in the key set, and the
        revocation state. Cheap (no I/O): streams call it on every heartbeat.
        """
        if time.time() >= float(principal.claims["exp"]) + LEEWAY_SECONDS:
            return "the token has expired"
        if principal.kid and principal.kid not in self._keys:
            return "the token was signed by a key that is no longer trusted"
        if self.revocations is not None:
            return self.revocations.refusal(principal.claims, principal.kid)
        return None

    def drop_key(self, kid: str) -> None:
        """Stop trusting ``kid`` at once (a revoked key), until the next JWKS fetch
        (which no longer lists it)."""
        self._keys.pop(kid, None)

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the token is malformed") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise Unauthorized("the token's signing algorithm is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the token has no key id")
        key = await self._key(kid)
        if alg not in _KTY_ALGORITHMS.get(key.key_type or "", set()):
            raise Unauthorized("the token's algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token is not meant for this audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token was issued by an unknown issuer") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token is invalid") from None
        lifetime = _number(claims["exp"]) - _number(claims["iat"])
        if lifetime > self.max_lifetime:
            raise Unauthorized(f"the token's lifetime ({lifetime:.0f} s) exceeds the "
                               f"maximum of {self.max_lifetime:.0f} s")
        roles = claims.get("roles", [])
        permissions = claims.get("permissions", [])
        if not isinstance(roles, list) or not isinstance(permissions, list):
            raise Unauthorized("the token's roles or permissions are malformed")
        return Principal(
            subject=str(claims["sub"]),
            roles=frozenset(str(r) for r in roles),
            permissions=frozenset(str(p) for p in permissions),
            token_id=str(claims["jti"]),
            token=token,
            claims=claims,
            kid=kid,
        )


def _number(value: Any) -> float:
    """A NumericDate claim as seconds (PyJWT has checked ``exp``/``iat`` are numbers)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise Unauthorized("the token's times are malformed") from None


def get_verifier(request: Request) -> TokenVerifier:
    """The app's verifier (made on first use from the runtime's settings), fed with the
    runtime's revocation state (:attr:`ServiceRuntime.revocations`)."""
    verifier: TokenVerifier | None = getattr(request.app.state, "verifier", None)
    runtime = getattr(request.app.state, "runtime", None)
    if verifier is None:
        if runtime is None:
            raise RuntimeError("the app has neither a token verifier nor a service runtime")
        settings = runtime.settings
        verifier = TokenVerifier(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            jwks_url=settings.jwks_url,
            cache_seconds=settings.jwks_cache_seconds,
            max_lifetime=settings.token_max_lifetime,
        )
        request.app.state.verifier = verifier
    if verifier.revocations is None and runtime is not None:
        verifier.revocations = runtime.revocations
    return verifier


async def authenticated(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    """FastAPI dependency: the verified caller (401 problem+json without a valid token)."""
    if not token:
        raise Unauthorized()
    principal = await get_verifier(request).verify(token)
    request.state.principal = principal
    return principal


Authenticated = Annotated[Principal, Depends(authenticated)]


def unauthorized_event(reason: str) -> dict[str, str]:
    """The last Server-Sent Event of a stream whose token expired or was revoked:
    ``event: unauthorized``, ``data: {"detail": reason}`` (a dict ``sse-starlette`` frames)."""
    return {"event": "unauthorized", "data": json.dumps({"detail": reason})}


def while_authorized(request: Request, principal: Principal, events: AsyncIterator[Any], *,
                     heartbeat: float) -> AsyncIterator[Any]:
    """``events`` (a stream's items: Server-Sent Events) for as long as ``principal``'s
    token stands: re-checked (:meth:`TokenVerifier.refusal`: expiry, key, revocation)
    every ``heartbeat`` seconds, at once when this service hears of a revocation, and
    before each item. When it fails, :func:`unauthorized_event` is sent and the stream
    ends (the client logs in or refreshes, then reconnects).
    """
    verifier = get_verifier(request)
    return until_refused(events, lambda: verifier.refusal(principal), verifier.revocations,
                         heartbeat=heartbeat, closing=unauthorized_event)


async def optional_principal(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal | None:
    """FastAPI dependency of a public route that shows more to some callers: the verified
    caller when a bearer token is sent (a bad token is still 401), else ``None``."""
    if not token:
        return None
    return await authenticated(request, token)


MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]


def require(*permissions: str) -> Any:
    """FastAPI dependency: the caller, who must hold every one of ``permissions`` (else 403)."""

    async def dependency(principal: Authenticated) -> Principal:
        missing = [str(p) for p in permissions if not principal.has(p)]
        if missing:
            raise Forbidden(f"this action requires the permission {', '.join(missing)}")
        return principal

    dependency.required_permissions = {"all": [str(p) for p in permissions]}  # type: ignore[attr-defined]
    return Depends(dependency)


def require_any(*permissions: str) -> Any:
    """FastAPI dependency: the caller, who must hold at least one of ``permissions``."""

    async def dependency(principal: Authenticated) -> Principal:
        if not any(principal.has(p) for p in permissions):
            raise Forbidden(
                "this action requires one of the permissions " + ", ".join(map(str, permissions))
            )
        return principal

    dependency.required_permissions = {"any": [str(p) for p in permissions]}  # type: ignore[attr-defined]
    return Depends(dependency)


def ensure_owner(principal: Principal, owner_id: str | None, *, unless: str | None = None) -> None:
    """Allow the owner of a resource, or a caller holding ``unless``; else 403.

    Raises:
        Forbidden: the caller neither owns the resource nor holds ``unless``.
    """
    if owner_id is not None and principal.subject == owner_id:
        return
    if unless is not None and principal.has(unless):
        return
    raise Forbidden("you may only act on your own records")


def declared_access(dependant: Any) -> dict[str, Any]:
    """What a route's dependency tree demands: ``{"authenticated": bool, "all": [...],
    "any": [...]}`` — read from :func:`require` / :func:`require_any` / :data:`Authenticated`
    — and ``"credential"``, the header of a credential other than a bearer token that a
    dependency checks itself (its ``credential`` attribute, e.g. a video consultation
    guest's ``X-Guest-Token``), or ``None``."""
    found: dict[str, Any] = {"authenticated": False, "all": [], "any": [], "credential": None}
    stack = [dependant]
    while stack:
        node = stack.pop()
        call = getattr(node, "call", None)
        if call is authenticated:
            found["authenticated"] = True
        found["credential"] = getattr(call, "credential", None) or found["credential"]
        declared = getattr(call, "required_permissions", None)
        if declared:
            found["authenticated"] = True
            found["all"] += declared.get("all", [])
            if declared.get("any"):
                found["any"] = sorted(set(found["any"]) | set(declared["any"]))
        stack.extend(getattr(node, "dependencies", []))
    found["all"] = sorted(set(found["all"]))
    return found


def annotate_openapi_access(router: Any) -> None:
    """Put each route's declared access in its OpenAPI operation as ``x-healthflow-access``.

    Walks ``router`` (an ``APIRouter``) and the routers included in it. The gateway's
    merged document carries the annotation, so tests (and readers) can walk every
    route against every role without a second, hand-written table.
    """
    from fastapi.routing import APIRoute

    for route in router.routes:
        if isinstance(route, APIRoute):
            route.openapi_extra = dict(route.openapi_extra or {}) | {
                "x-healthflow-access": declared_access(route.dependant)
            }
        elif (nested := getattr(route, "original_router", None)) is not None:
            annotate_openapi_access(nested)
