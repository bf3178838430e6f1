"""The notification rules alone: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from healthflow.notification import domain
from healthflow.notification.domain import Channel, QuietHours, SettableClock
from healthflow.notification.rendering import SMS_MAX_CHARS, Renderer

BERLIN = ZoneInfo("Europe/Berlin")


def test_delivery_ids_are_deterministic_and_distinct_per_part() -> None:
    base = domain.delivery_id("evt-1", "sms", "+491", "appointment_booked")
    assert base == domain.delivery_id("evt-1", "sms", "+491", "appointment_booked")
    assert len(base) == 32
    others = {domain.delivery_id(*parts) for parts in (
        ("evt-2", "sms", "+491", "appointment_booked"),
        ("evt-1", "email", "+491", "appointment_booked"),
        ("evt-1", "sms", "+492", "appointment_booked"),
        ("evt-1", "sms", "+491", "appointment_reminder"),
        ("evt-1s", "ms", "+491", "appointment_booked"),  # no ambiguity across the parts
    )}
    assert base not in others and len(others) == 5


@pytest.mark.parametrize(("consent", "prefs", "address", "active", "expected"), [
    ({}, {}, "+491", True, None),
    ({"sms": False}, {}, "+491", True, "no_consent"),
    ({"sms": False}, {"sms": True}, "+491", True, "no_consent"),
    ({}, {"sms": False}, "+491", True, "opted_out"),
    ({}, {}, None, True, "no_address"),
    ({}, {}, "+491", False, "inactive"),
])
def test_suppression(consent: dict[str, bool], prefs: dict[str, bool], address: str | None,
                     active: bool, expected: str | None) -> None:
    assert domain.suppression(Channel.SMS, consent=consent, preferences=prefs,
                              address=address, active=active) == expected


def test_the_feed_needs_no_consent_or_address() -> None:
    assert domain.suppression(Channel.IN_APP, consent={"email": False}, preferences={},
                              address=None) is None


def test_quiet_hours_wrapping_midnight() -> None:
    window = QuietHours.parse("22:00-07:00")
    assert window == QuietHours(time(22), time(7))
    late = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)  # 23:30 CET
    assert domain.quiet_until(late, window, BERLIN) == datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    early = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)  # 06:00 CET
    assert domain.quiet_until(early, window, BERLIN) == datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    day = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 07:00 CET: over
    assert domain.quiet_until(day, window, BERLIN) is None
    assert domain.quiet_until(late, None, BERLIN) is None


def test_quiet_hours_within_a_day_and_across_a_dst_change() -> None:
    window = QuietHours.parse("13:00-14:00")
    assert domain.quiet_until(datetime(2026, 11, 23, 12, 30, tzinfo=UTC), window,
                              BERLIN) == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    # the night clocks go forward (29 March 2026): 07:00 CEST is 05:00 UTC
    night = QuietHours.parse("22:00-07:00")
    assert domain.quiet_until(datetime(2026, 3, 28, 23, 0, tzinfo=UTC), night,
                              BERLIN) == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["7-8", "22:00", "25:00-07:00", "07:00-07:00"])
def test_malformed_quiet_hours_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        QuietHours.parse(text)


def test_reminder_times_skip_what_has_passed() -> None:
    start = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # less than 24 h ahead
    assert domain.reminder_times(start, [1440, 60], now) == [
        (60, datetime(2026, 11, 25, 7, 30, tzinfo=UTC))]


def test_local_times_carry_the_zone_abbreviation() -> None:
    winter = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 8, 30, tzinfo=UTC)
    assert domain.format_local(winter, BERLIN, "en") == "Wednesday, 25 November 2026, 09:30 CET"
    assert domain.format_local(summer, BERLIN, "en") == "Wednesday, 1 July 2026, 10:30 CEST"
    assert domain.format_local(winter, BERLIN, "de") == "Mittwoch, 25.11.2026, 09:30 Uhr CET"
    assert domain.format_local(winter, ZoneInfo("America/New_York"), "en") == (
        "Wednesday, 25 November 2026, 03:30 EST")


def test_unknown_zones_fall_back() -> None:
    assert domain.zone("Nowhere/City", "Europe/Berlin").key == "Europe/Berlin"
    assert domain.zone(None, "").key == "UTC"


def test_verification_tokens_bind_user_address_and_expiry() -> None:
    key, now = b"k" * 32, datetime(2026, 11, 23, tzinfo=UTC)
    token = domain.verification_token(key, "u-1", "Eve@Example.org", now + timedelta(hours=1))
    assert domain.check_verification_token(key, token, "eve@example.org", now) == "u-1"
    assert domain.check_verification_token(b"x" * 32, token, "eve@example.org", now) is None
    assert domain.check_verification_token(key, token, "eve@example.org",
                                           now + timedelta(hours=1)) is None
    tampered = token.replace("u-1", "u-2", 1)
    assert domain.check_verification_token(key, tampered, "eve@example.org", now) is None
    assert domain.check_verification_token(key, "garbage", "eve@example.org", now) is None


def test_addresses_are_masked() -> None:
    assert domain.mask_address("email", "eve@example.org") == "e***@example.org"
    assert domain.mask_address("sms", "+4915112345678") == "+49*******5678"
    assert domain.mask_address("push", "https://push.example/abc") == "push.example"


def test_the_settable_clock_moves_only_when_told() -> None:
    clock = SettableClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert clock.now() == clock.now()
    assert clock.advance(minutes=5) == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    with pytest.raises(ValueError):
        SettableClock(datetime(2026, 1, 1))


def test_messages_hold_no_clinical_detail_and_html_is_escaped() -> None:
    data = {"appointment_id": "a", "start": datetime(2026, 11, 25, 8, 30, tzinfo=UTC),
            "timezone": "Europe/Berlin", "mode": "online",
            "reason": "chest pain", "notes": "history of angina"}
    context = domain.appointment_context(data, locale="en", doctor_name="Dr <i>X</i>",
                                         place=None, fallback_tz="UTC")
    assert set(context) == {"when", "doctor", "place", "online", "appointment_id"}
    rendered = Renderer().render("appointment_booked", "en", context | {"name": "A&B"})
    everything = rendered.subject + rendered.text + rendered.html + rendered.short
    assert "chest" not in everything and "angina" not in everything
    assert "online (video)" in rendered.short and "Dr <i>X</i>" in rendered.short
    assert "Dr &lt;i&gt;X&lt;/i&gt;" in rendered.html and "A&amp;B" in rendered.html


def test_every_template_renders_in_every_locale() -> None:
    renderer = Renderer()
    context = {"when": "w", "previous_when": "p", "doctor": "d", "place": "x",
               "name": "n", "verify_link": "https://v", "valid_hours": 48, "link": "l"}
    names = [k.template for k in domain.APPOINTMENT_TEMPLATES.values()] + [
        k.template for k in domain.DOCTOR_TEMPLATES.values()] + [
        domain.REMINDER.template, domain.WELCOME.template,
        domain.PRESCRIPTION_ISSUED.template, domain.XRAY_REPORT_READY.template,
        domain.EMERGENCY_ACCESS.template]
    for locale in domain.SUPPORTED_LOCALES:
        for name in names:
            rendered = renderer.render(name, locale, context)
            assert rendered.subject and rendered.short and rendered.text
            assert f'lang="{locale}"' in rendered.html


def test_long_sms_bodies_are_cut() -> None:
    from healthflow.notification.rendering import Rendered

    rendered = Rendered(subject="s", text="t", html="h", short="x" * 400)
    assert len(rendered.sms) == SMS_MAX_CHARS and rendered.sms.endswith("…")


def test_an_offer_is_always_pushed_and_texted_only_without_a_stream() -> None:
    offered, xray = "paramedic.task_offered", "paramedic.xray_task_offered"
    assert domain.task_offer_channels(offered, True) == (Channel.PUSH,)
    assert domain.task_offer_channels(offered, None) == (Channel.PUSH,)  # older publisher
    assert domain.task_offer_channels(offered, False) == (Channel.PUSH, Channel.SMS)
    assert domain.task_offer_channels(xray, False) == (Channel.PUSH, Channel.SMS)
    assert domain.task_offer_channels("paramedic.task_unacknowledged", None) == (
        Channel.SMS,)


def test_a_task_push_carries_identifiers_and_a_topic_per_task() -> None:
    data = domain.task_push_data({"task_id": "t-9", "emergency_id": "em-1", "unit_id": "u-1",
                                  "paramedic_id": "p-1", "call_sign": None})
    assert data == {"task_id": "t-9", "kind": "emergency", "call_sign": "u-1",
                    "unit_id": "u-1", "path": "/paramedic/tasks/t-9", "tag": "task:t-9"}
    assert domain.task_push_data({"task_id": "t-9", "order_id": "o-1", "unit_id": "u-1",
                                  "call_sign": "RAD 7"})["kind"] == "xray"
    topic = domain.push_topic("task:t-9")
    assert topic == domain.push_topic("task:t-9") != domain.push_topic("task:t-10")
    assert len(topic) <= 32 and topic.isalnum()  # RFC 8030 §5.4: URL-safe base64 alphabet


def test_a_push_lives_until_its_delivery_expires_at_most() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert domain.push_ttl(now, None, 3600) == 3600
    assert domain.push_ttl(now, now + timedelta(seconds=29.2), 3600) == 30
    assert domain.push_ttl(now, now + timedelta(days=2), 3600) == 3600
    assert domain.push_ttl(now, now, 3600) == 1
    assert domain.push_headers(urgent=True, topic="abc") == {"Urgency": "high", "Topic": "abc"}
    assert domain.push_headers(urgent=False, topic=None) == {}
