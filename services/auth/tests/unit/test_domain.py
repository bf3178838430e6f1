"""Domain rules alone: password policy, identity normalisation, token claims, refresh
families, key rotation plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from healthflow.auth import domain, otp
from healthflow.auth.domain import (
    KeyInfo,
    KeyState,
    PasswordRejected,
    RefreshOutcome,
    assess_refresh,
    password_violations,
)
from healthflow.auth.settings import Settings
from healthflow.common.permissions import permissions_for

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def codes(password: str, email: str | None = None) -> set[str]:
    return {v.code for v in password_violations(password, email=email)}


# --------------------------------------------------------------------------- passwords


def test_a_long_uncommon_password_passes() -> None:
    assert codes("Quiet-Harbour-Lantern-73", "pat@example.org") == set()
    domain.check_password("Quiet-Harbour-Lantern-73", email="pat@example.org")


@pytest.mark.parametrize(("password", "code"), [
    ("Short-pw-1", "too_short"),  # 10 characters
    ("x" * 5 + "Quiet-Harbour-Lantern-73" * 6, "too_long"),  # 149 characters
    ("sanfrancisco", "common"),  # on the common list as it is
    ("Q1W2E3R4T5Y6U7I8O9P0", "common"),  # case does not matter
    ("Password123456!", "common"),  # a common core with digits and symbols around it
    ("!!Football2024!!", "common"),
    ("aaaaaaaaaaaaaaaa", "repetitive"),
    ("abababababab1", "repetitive"),
])
def test_policy_refuses(password: str, code: str) -> None:
    assert code in codes(password)
    with pytest.raises(PasswordRejected) as raised:
        domain.check_password(password)
    assert code in {v.code for v in raised.value.violations}


def test_policy_bounds_are_12_and_128_characters() -> None:
    base = "Quiet-Harbour-Lantern-73"
    assert "too_short" in codes(base[:11])
    assert "too_short" not in codes("Qu1et-Harb0r")  # exactly 12
    long_ok = (base * 6)[:128]
    assert "too_long" not in codes(long_ok)
    assert "too_long" in codes(long_ok + "x")


def test_policy_refuses_the_email_local_part_in_any_case() -> None:
    assert "contains_email" in codes("MyName-Florence.Nightingale-9", "florence.nightingale@x.org")
    assert "contains_email" not in codes("Quiet-Harbour-Lantern-73", "florence@x.org")
    # A local part of one or two characters would refuse almost anything: ignored.
    assert "contains_email" not in codes("Quiet-Harbour-Lantern-73", "qu@x.org")


def test_length_counts_nfkc_code_points() -> None:
    # Full-width letters are NFKC-normalised to ASCII before the checks (and hashing).
    fullwidth = "ｐａｓｓｗｏｒｄ１２３４５６"
    assert domain.normalize_password(fullwidth) == "password123456"
    assert "common" in codes(fullwidth)


def test_the_common_list_is_large() -> None:
    assert len(domain.common_passwords()) >= 25_000
    assert "password" in domain.common_passwords()


# --------------------------------------------------------------------------- identity


def test_email_key_is_case_insensitive() -> None:
    assert domain.normalize_email("  Ada.Lovelace@Example.ORG ") == "ada.lovelace@example.org"


@pytest.mark.parametrize(("raw", "e164"), [
    ("+44 7911 123456", "+447911123456"),
    ("+1 (202) 555-0143", "+12025550143"),
    ("+49 30 901820", "+4930901820"),
])
def test_phone_numbers_become_e164(raw: str, e164: str) -> None:
    assert domain.normalize_phone(raw) == e164


@pytest.mark.parametrize("raw", ["07700 900123", "+44 12", "+999 123456789", "call me", ""])
def test_bad_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        domain.normalize_phone(raw)


# --------------------------------------------------------------------------- access tokens


def test_access_token_claims_follow_rfc_9068() -> None:
    roles = ["patient"]
    claims = domain.access_token_claims(
        user_id="u1", roles=roles, permissions=permissions_for(roles), session_id="s1",
        client_id="healthflow", issuer="healthflow-auth", audience="healthflow", now=NOW,
        ttl=900, auth_time=NOW - timedelta(minutes=5),
    )
    assert {"iss", "aud", "sub", "exp", "iat", "jti", "client_id", "roles",
            "permissions", "sid", "auth_time"} <= set(claims)
    assert claims["iss"] == "healthflow-auth" and claims["aud"] == "healthflow"
    assert claims["sub"] == "u1" and claims["sid"] == "s1"
    assert claims["iat"] == int(NOW.timestamp())
    assert claims["exp"] - claims["iat"] == 900
    assert claims["roles"] == ["patient"]
    assert claims["permissions"] == sorted(permissions_for(roles))
    assert "users:manage" not in claims["permissions"]
    again = domain.access_token_claims(
        user_id="u1", roles=roles, permissions=[], session_id="s1", client_id="c",
        issuer="i", audience="a", now=NOW, ttl=900)
    assert again["jti"] != claims["jti"]


def test_refresh_tokens_are_random_and_stored_hashed() -> None:
    first, second = domain.new_refresh_token(), domain.new_refresh_token()
    assert first != second and len(first) >= 43
    digest = domain.hash_refresh_token(first)
    assert len(digest) == 64 and first not in digest
    assert digest == domain.hash_refresh_token(first)


# --------------------------------------------------------------------------- refresh families


def assess(**kw: object) -> RefreshOutcome:
    values: dict[str, object] = {
        "token_used": False, "token_expires_at": NOW + timedelta(days=1),
        "session_revoked": False, "session_expires_at": NOW + timedelta(days=30), "now": NOW,
    }
    return assess_refresh(**(values | kw))  # type: ignore[arg-type]


def test_a_fresh_token_rotates() -> None:
    assert assess() is RefreshOutcome.ROTATE


def test_a_used_token_is_reuse_even_before_it_would_expire() -> None:
    assert assess(token_used=True) is RefreshOutcome.REUSED
    assert assess(token_used=True, token_expires_at=NOW - timedelta(seconds=1)) \
        is RefreshOutcome.REUSED


def test_an_idle_token_expires() -> None:
    assert assess(token_expires_at=NOW) is RefreshOutcome.EXPIRED


def test_a_revoked_or_ended_family_refuses_everything() -> None:
    assert assess(session_revoked=True) is RefreshOutcome.SESSION_ENDED
    assert assess(session_revoked=True, token_used=True) is RefreshOutcome.SESSION_ENDED
    assert assess(session_expires_at=NOW) is RefreshOutcome.SESSION_ENDED


def test_refresh_expiry_never_outlives_the_session() -> None:
    end = NOW + timedelta(hours=1)
    assert domain.refresh_expiry(now=NOW, idle_ttl=86_400, session_expires_at=end) == end
    assert domain.refresh_expiry(now=NOW, idle_ttl=60, session_expires_at=end) \
        == NOW + timedelta(seconds=60)


# --------------------------------------------------------------------------- key rotation


def key(kid: str, state: KeyState, minutes_ago: int = 0,
        remove_after: datetime | None = None) -> KeyInfo:
    return KeyInfo(kid=kid, state=state, created_at=NOW - timedelta(minutes=minutes_ago),
                   remove_after=remove_after)


def test_rotation_promotes_the_oldest_next_key_and_retires_the_active_one() -> None:
    plan = domain.plan_rotation(
        [key("a", KeyState.ACTIVE, 60), key("n2", KeyState.NEXT, 1),
         key("n1", KeyState.NEXT, 30)],
        now=NOW, max_token_age=960)
    assert plan.activate == "n1" and plan.retire == "a"
    assert plan.retire_until == NOW + timedelta(seconds=960)
    assert plan.needs_next and plan.remove == ()


def test_rotation_removes_retired_keys_whose_tokens_expired() -> None:
    keys = [key("old", KeyState.RETIRED, 120, remove_after=NOW - timedelta(seconds=1)),
            key("young", KeyState.RETIRED, 10, remove_after=NOW + timedelta(minutes=5)),
            key("a", KeyState.ACTIVE, 5), key("n", KeyState.NEXT, 5)]
    plan = domain.plan_rotation(keys, now=NOW, max_token_age=960)
    assert plan.remove == ("old",)
    assert domain.expired_keys(keys, now=NOW) == ("old",)


def test_rotation_without_a_next_key_must_create_one_to_activate() -> None:
    plan = domain.plan_rotation([key("a", KeyState.ACTIVE)], now=NOW, max_token_age=960)
    assert plan.activate is None and plan.retire == "a"


# --------------------------------------------------------------------------- settings


def test_default_argon2_parameters_are_owasp_grade() -> None:
    defaults = Settings()
    # RFC 9106 §4 second recommendation; OWASP's minimum is m=19 MiB, t=2, p=1.
    assert defaults.argon2_memory_cost >= 19_456
    assert defaults.argon2_time_cost >= 2
    assert (defaults.argon2_time_cost, defaults.argon2_memory_cost,
            defaults.argon2_parallelism) == (3, 65_536, 4)
    assert defaults.access_token_ttl == 900


def test_redis_url_falls_back_to_the_platform_variable(monkeypatch) -> None:
    monkeypatch.delenv("AUTH_REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/3")
    assert Settings().redis_url == "redis://127.0.0.1:6379/3"
    monkeypatch.setenv("AUTH_REDIS_URL", "redis://127.0.0.1:6379/4")
    assert Settings().redis_url == "redis://127.0.0.1:6379/4"



# --------------------------------------------------------------------------- second factor


def test_a_totp_code_matches_within_the_window_and_once() -> None:
    secret = otp.new_totp_secret()
    now = datetime(2026, 11, 30, 12, 0, 29, tzinfo=UTC)  # the last second of its step
    step = otp.totp_step(now)
    code_at = lambda s: pyotp.TOTP(secret).at(s * 30)  # noqa: E731 - RFC 6238 reference
    assert otp.match_totp(secret, code_at(step), now=now, window=1, after_step=None) == step
    # a code typed in the previous step arrives in the next one, and the next step's early
    assert otp.match_totp(secret, code_at(step - 1), now=now, window=1,
                             after_step=None) == step - 1
    assert otp.match_totp(secret, code_at(step + 1), now=now, window=1,
                             after_step=None) == step + 1
    assert otp.match_totp(secret, code_at(step - 2), now=now, window=1,
                             after_step=None) is None
    assert otp.match_totp(secret, code_at(step), now=now, window=0, after_step=None) == step
    # once a step is used, neither it nor an earlier one is accepted again
    assert otp.match_totp(secret, code_at(step), now=now, window=1, after_step=step) is None
    assert otp.match_totp(secret, code_at(step + 1), now=now, window=1,
                             after_step=step) == step + 1
    for malformed in ("", "12345", "1234567", "abcdef"):
        assert otp.match_totp(secret, malformed, now=now, window=1, after_step=None) is None


def test_recovery_codes_are_random_and_hashed_without_separators_or_case() -> None:
    codes = otp.new_recovery_codes(10)
    assert len(set(codes)) == 10 and all(len(c) == 11 and c[5] == "-" for c in codes)
    assert set("".join(codes).replace("-", "")) <= set(otp.RECOVERY_ALPHABET)
    code = codes[0]
    assert otp.hash_recovery_code(code) == otp.hash_recovery_code(
        code.upper().replace("-", " "))
    assert otp.hash_recovery_code(code) != otp.hash_recovery_code(codes[1])


def test_roles_that_need_a_second_factor() -> None:
    required = ["admin", "compliance_officer", "doctor"]
    assert otp.needs_second_factor(["nurse", "doctor"], required)
    assert not otp.needs_second_factor(["patient"], required)
    assert not otp.needs_second_factor(["admin"], [])
