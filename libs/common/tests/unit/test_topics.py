import pytest

from healthflow.common.events.transport import topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("#", "appointment.booked", True),
        ("#", "a", True),
        ("appointment.*", "appointment.booked", True),
        ("appointment.*", "appointment.booked.late", False),
        ("appointment.#", "appointment", True),
        ("appointment.#", "appointment.booked.late", True),
        ("*.booked", "appointment.booked", True),
        ("*.booked", "booked", False),
        ("user.registered", "user.registered", True),
        ("user.registered", "user.registeredx", False),
        ("#.failed", "notification.failed", True),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
        ("a.*.#", "a", False),
        ("a.*.#", "a.b", True),
    ],
)
def test_amqp_topic_matching(pattern, key, expected):
    assert topic_matches(pattern, key) is expected


def test_one_retry_or_park_rule_for_every_transport() -> None:
    from healthflow.common.events.transport import (
        REASON_CONTRACT_VIOLATION,
        REASON_HANDLER_FAILED,
        REASON_UNKNOWN_TYPE,
        AfterFailure,
        ContractViolation,
        UnknownEventType,
        after_failure,
    )

    delays = (1.0, 5.0)
    assert after_failure(RuntimeError("db"), 0, delays) == AfterFailure("retry", delay=1.0)
    assert after_failure(RuntimeError("db"), 1, delays) == AfterFailure("retry", delay=5.0)
    assert after_failure(RuntimeError("db"), 2, delays) == AfterFailure(
        "park", REASON_HANDLER_FAILED)
    for attempts in (0, 2):  # neither waits for retries: retrying cannot fix them
        assert after_failure(UnknownEventType("x"), attempts, delays).reason == \
            REASON_UNKNOWN_TYPE
        assert after_failure(ContractViolation("x"), attempts, delays).reason == \
            REASON_CONTRACT_VIOLATION
