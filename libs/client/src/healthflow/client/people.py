"""Realistic, unique-per-run people and places for the demo and the drill (Faker).

Phones are E.164 mobile numbers of the hospital's country in ranges the
``phonenumbers`` library accepts as valid; emails are at ``example.org``
(RFC 2606) with a per-run tag, so two runs never collide.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from faker import Faker


@dataclass(frozen=True)
class Site:
    """A city a hospital can stand in: IANA zone, ISO 3166-1 country, Faker locale."""

    city: str
    zone: str
    country: str
    locale: str
    phone_prefix: str  # E.164 prefix of a valid mobile range
    phone_digits: int  # random digits after the prefix


SITES = (
    Site("Berlin", "Europe/Berlin", "DE", "de_DE", "+49151", 8),
    Site("London", "Europe/London", "GB", "en_GB", "+447400", 6),
    Site("New York", "America/New_York", "US", "en_US", "+1212555", 4),
    Site("Los Angeles", "America/Los_Angeles", "US", "en_US", "+1213555", 4),
    Site("Honolulu", "Pacific/Honolulu", "US", "en_US", "+1808555", 4),
    Site("São Paulo", "America/Sao_Paulo", "BR", "pt_BR", "+55119", 8),
    Site("Mumbai", "Asia/Kolkata", "IN", "en_IN", "+9198", 8),
    Site("Tokyo", "Asia/Tokyo", "JP", "ja_JP", "+81902", 7),
    Site("Sydney", "Australia/Sydney", "AU", "en_AU", "+61412", 6),
)

ALLERGIES = (
    ("Penicillin", "764146007", "high", "Hives"),
    ("Peanut", "256349002", "high", "Anaphylaxis"),
    ("Latex", "111088007", "low", "Contact dermatitis"),
    ("Shellfish", "227037002", "high", "Swelling of the lips"),
    ("Pollen", "256259004", "low", "Sneezing"),
    ("Ibuprofen", "387207008", "low", "Stomach pain"),
)
CONDITIONS = (
    ("Essential hypertension", "I10"),
    ("Asthma", "J45.909"),
    ("Type 2 diabetes mellitus", "E11.9"),
    ("Migraine", "G43.909"),
    ("Hypothyroidism", "E03.9"),
    ("Atopic dermatitis", "L20.9"),
    ("Atrial fibrillation", "I48.91"),
)


def pick_site(now: datetime | None = None, target_hour: float = 11.0) -> Site:
    """The site whose local time is closest to ``target_hour`` (so SMS quiet hours,
    21:00–08:00 local, do not hold the demo's messages back)."""
    now = now or datetime.now(UTC)

    def distance(site: Site) -> float:
        local = now.astimezone(ZoneInfo(site.zone))
        hour = local.hour + local.minute / 60
        return min(abs(hour - target_hour), 24 - abs(hour - target_hour))

    return min(SITES, key=distance)


def password() -> str:
    """A fresh password that meets the policy (12–128 characters, not guessable)."""
    return "Hf-" + secrets.token_urlsafe(18)


@dataclass
class Person:
    """A user the demo creates: name, unique email, E.164 phone, password."""

    given: str
    family: str
    email: str
    phone: str
    password: str = field(repr=False)
    birth_date: date | None = None
    gender: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.given} {self.family}"


class People:
    """A Faker-backed generator of unique people for one run (``tag`` in every email)."""

    def __init__(self, site: Site, tag: str, seed: int | None = None) -> None:
        self.site = site
        self.tag = tag
        self.faker = Faker([site.locale, "en_US"])
        self.random = random.Random(seed)  # noqa: S311 - test data, not secrets
        if seed is not None:
            self.faker.seed_instance(seed)
        self.count = 0

    def phone(self) -> str:
        digits = "".join(self.random.choice("0123456789") for _ in range(self.site.phone_digits))
        return self.site.phone_prefix + digits

    def person(self, role: str) -> Person:
        """A new person; ``role`` goes into the email's local part (``…+patient…``)."""
        self.count += 1
        gender = self.random.choice(["female", "male"])
        given = (self.faker.first_name_female() if gender == "female"
                 else self.faker.first_name_male())
        family = self.faker.last_name()
        local = self.faker.user_name().replace(".", "")[:20] or "user"
        email = f"{local}.{role}.{self.tag}{self.count}@example.org".lower()
        birth = self.faker.date_of_birth(minimum_age=1, maximum_age=95)
        return Person(given, family, email, self.phone(), password(), birth, gender)

    def chart(self, person: Person) -> dict[str, Any]:
        """A ``PATCH /api/v1/patients/me`` body: demographics, allergies, conditions."""
        allergies = [{"code": {"text": text, "code": code, "system": "http://snomed.info/sct"},
                      "criticality": crit,
                      "reactions": [{"manifestation": reaction, "severity": "moderate"}]}
                     for text, code, crit, reaction in self.random.sample(
                         ALLERGIES, self.random.randint(0, 2))]
        conditions = [{"code": {"text": text, "code": code,
                                "system": "http://hl7.org/fhir/sid/icd-10"},
                       "onset_date": self.faker.date_between("-10y", "-1m").isoformat()}
                      for text, code in self.random.sample(CONDITIONS, self.random.randint(0, 2))]
        contact = self.person("contact")
        return {
            "birth_date": person.birth_date.isoformat() if person.birth_date else None,
            "gender": person.gender,
            "allergies": allergies,
            "conditions": conditions,
            "emergency_contacts": [{"name": contact.full_name, "relationship": "partner",
                                    "phone": contact.phone}],
        }
