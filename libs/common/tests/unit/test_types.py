"""The shared code types: ISO 4217 currencies, ISO 3166-1 countries, IANA time zones."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from healthflow.common.types import Country, Currency, TimeZone


@pytest.mark.parametrize("code", ["EUR", "INR", "JPY"])
def test_currencies_are_iso_4217_codes(code: str) -> None:
    assert TypeAdapter(Currency).validate_python(code) == code


@pytest.mark.parametrize("bad", ["XYZ", "EURO", "", "€", "eur"])
def test_unknown_currencies_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):  # "Invalid ISO 4217 currency code", or too long
        TypeAdapter(Currency).validate_python(bad)


def test_countries_are_iso_3166_alpha_2() -> None:
    adapter = TypeAdapter(Country)
    assert adapter.validate_python("DE") == "DE" and adapter.validate_python("IN") == "IN"
    for bad in ("ZZ", "DEU", "", "1A", "de"):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


def test_time_zones_are_iana_keys_of_places() -> None:
    adapter = TypeAdapter(TimeZone)
    for good in ("Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"):
        assert adapter.validate_python(good) == good
    for bad in ("Mars/Olympus", "europe/berlin", "", "../etc/passwd", "localtime", "Factory",
                "Berlin"):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)
