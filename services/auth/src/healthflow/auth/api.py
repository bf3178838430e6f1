"""HTTP routes of the auth service: thin (use cases in :mod:`.service`), permissions
declared on each route.

Public (visibly: no principal parameter): ``POST /api/v1/auth/register``,
``POST /api/v1/auth/token``, ``POST /api/v1/auth/refresh``,
``POST /api/v1/auth/password/reset`` and ``…/reset/complete``,
``POST /api/v1/auth/token/mfa`` and ``…/token/mfa/enrolment`` (they carry a challenge),
``GET /.well-known/jwks.json``. Internal (not routed by the gateway, and each states
the services it serves, :mod:`healthflow.common.servicecredentials`: 401/403
problem+json without a valid ``Authorization: Service`` credential):
``GET /internal/revocations`` (any service, the gateway),
``GET /internal/person-keys/{user_id}`` (the person-key readers). Everything else
states the permission it needs.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from healthflow.auth import contact, credentials, mfa, personal, revocation, service, signing
from healthflow.auth.domain import IssuedTokens
from healthflow.auth.keys import key_summary
from healthflow.auth.schemas import (
    JWKS,
    ChangePasswordRequest,
    ContactChangeAccepted,
    ContactChangeRequest,
    ContactLinkRedeem,
    CreateUserRequest,
    EnrolmentOut,
    KeyOut,
    MeOut,
    MfaChallengeRequest,
    MfaLoginRequest,
    MfaTokenResponse,
    PasswordResetAccepted,
    PasswordResetComplete,
    PasswordResetRequest,
    RecoveryCodesOut,
    RefreshRequest,
    RegisterRequest,
    RotationOut,
    TokenResponse,
    TotpCode,
    UserOut,
)
from healthflow.auth.service import Auth
from healthflow.common.auth import Principal, require
from healthflow.common.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from healthflow.common.permissions import Permission, Role, permissions_for
from healthflow.common.personaldata import person_key_json
from healthflow.common.servicecredentials import PERSON_KEY_READERS, require_service

auth_router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
users_router = APIRouter(prefix="/api/v1/users", tags=["users"])
wellknown_router = APIRouter(tags=["auth"])

internal_router = APIRouter(prefix="/internal", tags=["internal"], include_in_schema=False)

routers = [auth_router, users_router, wellknown_router, internal_router]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1


def _problems(**described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for problem+json answers: ``_problems(**{"400": "why"})``."""
    return {int(code): {"description": text, "content": {"application/problem+json": {}}}
            for code, text in described.items()}


GRANT_PROBLEMS = _problems(**{
    "400": 'RFC 6749 §5.2 "invalid_grant": the same answer for an unknown email, a wrong '
           "password, an inactive account, or an unknown, used, expired or revoked refresh "
           "token",
    "429": "too many failed logins for the account or the client address; see Retry-After",
})


def get_auth(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


AuthService = Annotated[Auth, Depends(get_auth)]


def client_ip(request: Request, trusted_proxies: list[str]) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy (the
    gateway), the right-most address of ``X-Forwarded-For`` that is not a trusted proxy.

    ``trusted_proxies`` holds addresses or networks (``10.0.0.0/8``). Everything
    left of the first untrusted hop was written by the client and is ignored.
    """
    peer = request.client.host if request.client else None
    if peer is None or not _trusted(peer, trusted_proxies):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    for candidate in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            break
        if not _trusted(candidate, trusted_proxies):
            return candidate
    return peer


def _trusted(address: str, trusted_proxies: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in trusted_proxies:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _token_response(tokens: IssuedTokens, response: Response) -> TokenResponse:
    response.headers.update(NO_STORE)
    return TokenResponse(access_token=tokens.access_token, refresh_token=tokens.refresh_token,
                         expires_in=tokens.expires_in)


# --------------------------------------------------------------------------- /api/v1/auth


@auth_router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut,
                  summary="Register as a patient (public)",
                  responses=_problems(**{"422": "invalid input or a password the policy "
                                                "refuses"}))
async def register(body: RegisterRequest, auth: AuthService) -> UserOut:
    """Create a patient account; 422 for a weak password. An address that already has an
    account gets the same answer (nothing is created; its owner is told by e-mail)."""
    user = await credentials.register(auth, email=body.email,
                                      password=body.password.get_secret_value(),
                                      full_name=body.full_name, phone=body.phone)
    return UserOut.of(user)


@auth_router.post("/token", response_model=TokenResponse,
                  summary="Log in: OAuth 2.0 password grant (public)",
                  responses=GRANT_PROBLEMS | _problems(**{
                      "403": '"mfa_required" with mfa_token (and enrolment_required): send '
                             "the authenticator's code to POST /api/v1/auth/token/mfa"}))
async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request,
                response: Response, auth: AuthService) -> TokenResponse:
    """``username`` is the email. 400 ``invalid_grant`` for any bad credentials; 429 with
    ``Retry-After`` after too many failures for the account or the client address."""
    tokens = await service.login(
        auth, email=form.username, password=form.password, client_id=form.client_id,
        client_ip=client_ip(request, auth.settings.trusted_proxies),
    )
    return _token_response(tokens, response)


@auth_router.post("/refresh", response_model=TokenResponse,
                  summary="Exchange a refresh token for new tokens (public)",
                  responses=_problems(**{"400": GRANT_PROBLEMS[400]["description"]}))
async def refresh(body: RefreshRequest, request: Request, response: Response,
                  auth: AuthService) -> TokenResponse:
    """Rotates the refresh token. Presenting a used one revokes its whole session."""
    tokens = await service.refresh(
        auth, refresh_token=body.refresh_token,
        client_ip=client_ip(request, auth.settings.trusted_proxies),
    )
    return _token_response(tokens, response)


@auth_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT,
                  summary="Revoke the session of the calling access token")
async def logout(auth: AuthService,
                 principal: Principal = require(Permission.PROFILE_READ_OWN)) -> Response:
    await service.logout(auth, user_id=principal.subject, session_id=principal.claims.get("sid"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@auth_router.get("/me", response_model=MeOut, summary="The caller's account")
async def me(auth: AuthService,
             principal: Principal = require(Permission.PROFILE_READ_OWN)) -> MeOut:
    out = UserOut.of(await service.get_own(auth.runtime, principal.subject))
    return MeOut(**out.model_dump(), permissions=sorted(permissions_for(out.roles)))


@auth_router.patch("/me/contact", status_code=status.HTTP_202_ACCEPTED,
                   response_model=ContactChangeAccepted,
                   summary="Change one's own e-mail address or phone number",
                   responses=_problems(**{
                       "403": "the current password is incorrect, or the authenticator's "
                              "code is missing or wrong (accounts with one)",
                       "429": "too many failed attempts, or too many contact changes; see "
                              "Retry-After"}))
async def change_contact(
    body: ContactChangeRequest, request: Request, response: Response, auth: AuthService,
    principal: Principal = require(Permission.CREDENTIALS_MANAGE_OWN),
) -> ContactChangeAccepted:
    """202 with one body whether or not the address is free (no account enumeration). A
    new address gets a confirmation link (``auth.email_change_requested``) and changes
    when it is redeemed; a new number changes now (``user.contact_changed``)."""
    await contact.change_contact(
        auth, user_id=principal.subject, current_password=body.current_password.get_secret_value(),
        email=body.email, phone=body.phone, code=body.code,
        client_ip=client_ip(request, auth.settings.trusted_proxies))
    response.headers.update(NO_STORE)
    return ContactChangeAccepted(detail=contact.CONTACT_ACCEPTED)


@auth_router.post("/contact/confirm", status_code=status.HTTP_204_NO_CONTENT,
                  summary="Confirm a new e-mail address with the e-mailed link (public)",
                  responses=_problems(**{"400": contact.INVALID_CONTACT_LINK}))
async def confirm_email_change(body: ContactLinkRedeem, auth: AuthService) -> Response:
    """Uses up the link; the account moves to the new address (``user.contact_changed``)
    unless another account has it by now (its owner is told; the same answer)."""
    await contact.confirm_email_change(auth, token=body.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)


@auth_router.post("/contact/revert", status_code=status.HTTP_204_NO_CONTENT,
                  summary="Undo an e-mail change with the link sent to the old address (public)",
                  responses=_problems(**{"400": contact.INVALID_CONTACT_LINK,
                                         "409": contact.OLD_ADDRESS_TAKEN}))
async def revert_contact_change(body: ContactLinkRedeem, auth: AuthService) -> Response:
    """Uses up the link, restores the old address (409 when taken) and ends every session."""
    await contact.revert_contact_change(auth, token=body.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)


@auth_router.get("/keys", response_model=list[KeyOut], summary="Signing keys (no key material)")
async def list_keys(auth: AuthService,
                    principal: Principal = require(Permission.KEYS_MANAGE)) -> list[KeyOut]:
    return [KeyOut(**key_summary(d)) for d in await signing.list_keys(auth.runtime)]


@auth_router.post("/keys/rotate", response_model=RotationOut, summary="Rotate the signing key")
async def rotate_keys(auth: AuthService,
                      principal: Principal = require(Permission.KEYS_MANAGE)) -> RotationOut:
    """The published ``next`` key starts signing; the old one stays in the JWKS until the
    tokens it signed have expired."""
    rotation = await signing.rotate_keys(auth.runtime, auth.keys, actor=principal.actor)
    return RotationOut(activated_kid=rotation.activated_kid, retired_kid=rotation.retired_kid,
                       next_kid=rotation.next_kid, retired_until=rotation.retired_until,
                       removed_kids=list(rotation.removed_kids))


@auth_router.post("/keys/{kid}/revoke", response_model=KeyOut,
                  summary="Revoke a signing key at once (compromise)",
                  responses=_problems(**{"404": "no published key has this id"}))
async def revoke_key(kid: str, auth: AuthService,
                     principal: Principal = require(Permission.KEYS_MANAGE)) -> KeyOut:
    """The key leaves the JWKS and every token it signed is refused at every service
    within seconds (``auth.signing_key_revoked``); its holders log in again. An active
    key is rotated out first, so signing goes on with the published ``next`` key."""
    return KeyOut(**key_summary(await signing.revoke_key(auth.runtime, auth.keys, kid,
                                                         actor=principal.actor)))


# --------------------------------------------------------------------------- /internal


@internal_router.get("/revocations", dependencies=[Depends(require_service())])
async def revocations(
    auth: AuthService, response: Response,
    since: Annotated[float | None, Query(ge=0, le=1e11,
                                         description="epoch seconds: only entries recorded "
                                                     "since then")] = None,
) -> dict[str, Any]:
    """The revocations every token verifier must hold now
    (:data:`healthflow.common.revocation.Snapshot`); read by each service at start and
    every ``REVOCATION_SYNC_INTERVAL`` seconds, and polled by the gateway with ``since``.
    Identifiers and times only."""
    response.headers.update(NO_STORE)
    return await revocation.revocation_snapshot(
        auth.runtime, None if since is None else datetime.fromtimestamp(since, UTC))


@internal_router.get("/person-keys/{user_id}",
                     dependencies=[Depends(require_service(PERSON_KEY_READERS))])
async def person_key(user_id: str, auth: AuthService, response: Response) -> dict[str, str]:
    """``user_id``'s person key ``{key_id, key: base64url of 32 bytes}`` for the services
    that open sealed personal values (:mod:`healthflow.common.personaldata`); 404 once
    the person was erased."""
    response.headers.update(NO_STORE)
    return person_key_json(await personal.person_key(auth.runtime, auth.keys.wrapper, user_id))


# --------------------------------------------------------------------------- /.well-known


@wellknown_router.get("/.well-known/jwks.json", response_model=JWKS,
                      summary="Token verification keys (RFC 7517 JWK Set, public)")
async def jwks(auth: AuthService, response: Response) -> JWKS:
    response.headers["Cache-Control"] = "public, max-age=60"
    return JWKS(**auth.keys.jwks())


# --------------------------------------------------------------------------- /api/v1/users


@users_router.post("", status_code=status.HTTP_201_CREATED, response_model=UserOut,
                   summary="Create a staff account")
async def create_user(body: CreateUserRequest, auth: AuthService,
                      principal: Principal = require(Permission.USERS_MANAGE)) -> UserOut:
    user = await service.create_account(
        auth.runtime, auth.hasher, auth.keys.wrapper, email=body.email,
        password=body.password.get_secret_value(), full_name=body.full_name, phone=body.phone,
        roles=body.roles, actor=principal.actor, self_registered=False,
    )
    return UserOut.of(user)


@users_router.get("", response_model=Page[UserOut], summary="List and search users")
async def list_users(
    auth: AuthService,
    principal: Principal = require(Permission.USERS_READ),
    email: Annotated[str | None, Query(max_length=320, description="email prefix")] = None,
    name: Annotated[str | None, Query(max_length=200, description="part of the name")] = None,
    role: Role | None = None,
    user_status: Annotated[str | None, Query(alias="status",
                                             pattern="^(active|inactive)$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[UserOut]:
    docs, next_cursor = await service.find_users(
        auth.runtime, email=email, name=name, role=role, status=user_status, cursor=cursor,
        limit=limit,
    )
    return Page[UserOut](items=[UserOut.of(d) for d in docs], next_cursor=next_cursor)


@users_router.get("/{user_id}", response_model=UserOut, summary="One user")
async def get_user(user_id: str, auth: AuthService,
                   principal: Principal = require(Permission.USERS_READ)) -> UserOut:
    return UserOut.of(await service.get_account(auth.runtime, user_id))


@users_router.post("/{user_id}/deactivate", response_model=UserOut,
                   summary="Deactivate an account and revoke its sessions")
async def deactivate_user(user_id: str, auth: AuthService,
                          principal: Principal = require(Permission.USERS_MANAGE)) -> UserOut:
    return UserOut.of(await service.deactivate(auth.runtime, user_id, actor=principal.actor))


@users_router.post("/{user_id}/erasure", response_model=UserOut,
                   summary="Erase a person's personal data (crypto-shredding)")
async def erase_user(user_id: str, auth: AuthService,
                     principal: Principal = require(Permission.USERS_ERASE)) -> UserOut:
    """Executes the person's request for erasure (GDPR art. 17): destroys their person
    key, anonymises and deactivates the account, ends its sessions and publishes
    ``user.erased``; the answer is the anonymised account. Idempotent."""
    return UserOut.of(await personal.erase(auth.runtime, user_id, actor=principal.actor))


@users_router.post("/{user_id}/activate", response_model=UserOut,
                   summary="Activate an account")
async def activate_user(user_id: str, auth: AuthService,
                        principal: Principal = require(Permission.USERS_MANAGE)) -> UserOut:
    return UserOut.of(await service.activate(auth.runtime, user_id, actor=principal.actor))


@users_router.put("/{user_id}/roles/{role}", response_model=UserOut,
                  summary="Give a staff role (idempotent)")
async def assign_role(user_id: str, role: Role, auth: AuthService,
                      principal: Principal = require(Permission.USERS_MANAGE)) -> UserOut:
    return UserOut.of(await service.change_role(auth.runtime, user_id, role, assign=True,
                                                actor=principal.actor))


@users_router.delete("/{user_id}/roles/{role}", response_model=UserOut,
                     summary="Take a role away (idempotent)")
async def remove_role(user_id: str, role: Role, auth: AuthService,
                      principal: Principal = require(Permission.USERS_MANAGE)) -> UserOut:
    return UserOut.of(await service.change_role(auth.runtime, user_id, role, assign=False,
                                                actor=principal.actor))


# --------------------------------------------------------------------------- passwords

RESET_ACCEPTED = ("if an active account has this address, a reset link is on its way; "
                  "it is valid for a short time and works once")


@auth_router.post("/password", status_code=status.HTTP_204_NO_CONTENT,
                  summary="Change one's own password (ends every session)",
                  responses=_problems(**{
                      "403": "the current password is incorrect",
                      "422": "a new password the policy refuses, or the current one",
                      "429": "too many failed attempts for the account or the client address; "
                             "see Retry-After"}))
async def change_password(
    body: ChangePasswordRequest, request: Request, auth: AuthService,
    principal: Principal = require(Permission.CREDENTIALS_MANAGE_OWN),
) -> Response:
    """Every session of the caller ends, this one too: log in again with the new password.
    A wrong current password counts as a failed login."""
    await credentials.change_password(
        auth, user_id=principal.subject,
        current_password=body.current_password.get_secret_value(),
        new_password=body.new_password.get_secret_value(),
        client_ip=client_ip(request, auth.settings.trusted_proxies))
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)


@auth_router.post("/password/reset", status_code=status.HTTP_202_ACCEPTED,
                  response_model=PasswordResetAccepted,
                  summary="Ask for a password-reset link by e-mail (public)")
async def request_password_reset(body: PasswordResetRequest,
                                 auth: AuthService) -> PasswordResetAccepted:
    """202 with the same body whether or not an account has the address."""
    await credentials.request_password_reset(auth, email=body.email)
    return PasswordResetAccepted(detail=RESET_ACCEPTED)


@auth_router.post("/password/reset/complete", status_code=status.HTTP_204_NO_CONTENT,
                  summary="Set a new password with an e-mailed reset link (public)",
                  responses=_problems(**{
                      "400": "the link is invalid, expired or already used",
                      "422": "a new password the policy refuses"}))
async def complete_password_reset(body: PasswordResetComplete, auth: AuthService) -> Response:
    """Uses up the link and ends every session of the account."""
    await credentials.reset_password(auth, token=body.token,
                                     new_password=body.new_password.get_secret_value())
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)


# --------------------------------------------------------------------------- second factor

@auth_router.post("/mfa/totp", status_code=status.HTTP_201_CREATED, response_model=EnrolmentOut,
                  summary="Begin enrolling an authenticator app (TOTP)",
                  responses=_problems(**{"409": "an authenticator is already enrolled"}))
async def start_totp_enrolment(
    response: Response, auth: AuthService,
    principal: Principal = require(Permission.CREDENTIALS_MANAGE_OWN),
) -> EnrolmentOut:
    """A new key, pending until confirmed with a first code."""
    enrolment = await mfa.start_enrolment(auth, user_id=principal.subject)
    response.headers.update(NO_STORE)
    return EnrolmentOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@auth_router.post("/mfa/totp/confirm", response_model=RecoveryCodesOut,
                  summary="Confirm the authenticator with a first code",
                  responses=_problems(**{"409": "no enrolment pending",
                                         "422": "the code does not match"}))
async def confirm_totp_enrolment(
    body: TotpCode, response: Response, auth: AuthService,
    principal: Principal = require(Permission.CREDENTIALS_MANAGE_OWN),
) -> RecoveryCodesOut:
    """Activates the authenticator; answers the recovery codes (shown once)."""
    codes = await mfa.confirm_enrolment(auth, user_id=principal.subject, code=body.code)
    response.headers.update(NO_STORE)
    return RecoveryCodesOut(recovery_codes=codes)


@auth_router.post("/token/mfa", response_model=MfaTokenResponse,
                  summary="Log in, second step: the authenticator's code (public)",
                  responses=_problems(**{
                      "400": 'RFC 6749 "invalid_grant": a wrong or reused code, a used '
                             "recovery code, an unknown or expired challenge",
                      "429": "too many failed attempts; see Retry-After"}))
async def token_second_factor(body: MfaLoginRequest, request: Request, response: Response,
                              auth: AuthService) -> MfaTokenResponse:
    """``code`` or ``recovery_code`` for the challenge ``mfa_token``."""
    done = await mfa.complete_login(auth, mfa_token=body.mfa_token, code=body.code,
                                    recovery_code=body.recovery_code,
                                    client_ip=client_ip(request, auth.settings.trusted_proxies))
    response.headers.update(NO_STORE)
    return MfaTokenResponse(access_token=done.tokens.access_token,
                            refresh_token=done.tokens.refresh_token,
                            expires_in=done.tokens.expires_in,
                            recovery_codes=done.recovery_codes)


@auth_router.post("/token/mfa/enrolment", response_model=EnrolmentOut,
                  summary="Log in, enrolment step: the key for a required authenticator "
                          "(public)",
                  responses=_problems(**{"400": "not an enrolment challenge, or expired"}))
async def token_enrolment(body: MfaChallengeRequest, response: Response,
                          auth: AuthService) -> EnrolmentOut:
    """For a ``mfa_required`` answer with ``enrolment_required``: confirm the key by
    sending its first code to ``POST /api/v1/auth/token/mfa``."""
    enrolment = await mfa.start_enrolment_at_login(auth, mfa_token=body.mfa_token)
    response.headers.update(NO_STORE)
    return EnrolmentOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@users_router.post("/{user_id}/mfa/reset", status_code=status.HTTP_204_NO_CONTENT,
                   summary="Remove a user's authenticator and recovery codes (lost phone)")
async def reset_mfa(user_id: str, auth: AuthService,
                    principal: Principal = require(Permission.USERS_MANAGE)) -> Response:
    """Their next login enrols a new one where their roles require it."""
    await mfa.reset_factor(auth, user_id=user_id, actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
