"""Field types every service uses for codes from standards, instead of hand-kept lists.

* :data:`Currency` — an ISO 4217 alphabetic code, upper case as the standard writes
  it (``EUR``, ``INR``; ``eur`` is refused), from ``pydantic-extra-types`` over
  ``pycountry``'s ISO 4217 table. Money is always an integer amount in the
  currency's minor unit.
* :data:`Country` — an ISO 3166-1 alpha-2 code, upper case (``DE``).
* :class:`AdministrativeGender` — FHIR R4's value set of the same name
  (``male``, ``female``, ``other``, ``unknown``).
* :data:`TimeZone` — an IANA tz database key (``Europe/Berlin``), exact case;
  the tz files that are not zones of a place (``localtime``, ``Factory``) are refused.

Pure: pydantic only, so domain modules and event contracts may use them.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr
from pydantic_extra_types.country import CountryAlpha2
from pydantic_extra_types.currency_code import ISO4217
from pydantic_extra_types.timezone_name import TimeZoneName


class AdministrativeGender(StrEnum):
    """FHIR R4 ``AdministrativeGender`` (http://hl7.org/fhir/R4/valueset-administrative-gender.html)."""

    MALE = "male"
    FEMALE = "female"
    OTHER = "other"
    UNKNOWN = "unknown"


NOT_ZONES = frozenset({"localtime", "Factory", "posixrules", "posix", "right"})
"""Files of some tz installations that are not IANA zone names."""


def _place_zone(value: str) -> str:
    if value in NOT_ZONES:
        raise ValueError(f"{value!r} is not the time zone of a place (e.g. Europe/Berlin)")
    return value


def _upper_case(value: object) -> object:
    if isinstance(value, str) and value != value.upper():
        raise ValueError(f"{value!r} must be written in upper case ({value.upper()!r})")
    return value


Currency = Annotated[ISO4217, BeforeValidator(_upper_case),
                     Field(description="ISO 4217 alphabetic code, upper case (EUR, INR)")]
Country = Annotated[CountryAlpha2, BeforeValidator(_upper_case),
                    Field(description="ISO 3166-1 alpha-2 code, upper case (e.g. DE)")]
TimeZone = Annotated[TimeZoneName, AfterValidator(_place_zone),
                     Field(description="IANA time zone key, e.g. Europe/Berlin")]


def _ed25519_seed(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()  # never quoted in an error: it is a secret
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
    if len(raw) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes (base64url, no padding)")
    return value


Ed25519Seed = Annotated[SecretStr, AfterValidator(_ed25519_seed)]
"""An Ed25519 private key as its 32-byte seed (RFC 8032 §5.1.5), base64url without
padding, kept as a secret (never in a repr, a log line or an error message)."""
