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
