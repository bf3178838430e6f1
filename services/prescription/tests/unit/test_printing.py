"""The printed prescription alone: the signed message, Ed25519 keys, the PDF's text."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime

import pypdf
import pytest

from healthflow.prescription import keys, printing
from healthflow.prescription.domain import StateConflict, ensure_printable, signed_message

DOC = {"_id": "rx-1", "patient_id": "pat-1", "prescriber_id": "doc-1", "encounter_id": "enc-1",
       "issued_at": datetime(2027, 3, 1, 9, 5, tzinfo=UTC),
       "medication": {"text": "Amoxicillin", "code": "J01CA04",
                      "system": "http://www.whocc.no/atc"},
       "dosage": {"dose": {"value": 500.0, "unit": "mg"},
                  "route": {"display": "Oral route"},
                  "frequency": {"count": 3, "period": 1.0, "period_unit": "d"},
                  "duration": {"value": 7.0, "unit": "d"}, "instructions": "#eval(\"x\") *b*"},
       "dispense_request": {"quantity": {"value": 21.0, "unit": "{capsule}"}, "repeats": 1}}


def test_the_signed_message_binds_the_hash_to_the_prescription() -> None:
    digest = "AB" * 32
    assert signed_message("rx-1", digest) == (
        b"healthflow-prescription-pdf:v1:rx-1:" + b"ab" * 32)
    assert signed_message("rx-1", digest) != signed_message("rx-2", digest)


def test_an_ed25519_signature_verifies_with_the_public_jwk_only_for_its_message() -> None:
    key = keys.from_seed(bytes(range(32)))
    jwk = key.jwk()
    assert (jwk["kty"], jwk["crv"], len(jwk["kid"])) == ("OKP", "Ed25519", 16)
    signature = key.sign(b"message")
    assert len(signature) == 86 and keys.verify(jwk, b"message", signature)
    assert not keys.verify(jwk, b"other", signature)
    assert not keys.verify(keys.from_seed(bytes(32)).jwk(), b"message", signature)
    assert not keys.verify(jwk, b"message", "not-base64!")
    with pytest.raises(ValueError):
        keys.from_seed(b"short")


def test_only_issued_prescriptions_are_printed() -> None:
    ensure_printable("active")
    ensure_printable("completed")
    for status in ("draft", "cancelled", "entered-in-error"):
        with pytest.raises(StateConflict):
            ensure_printable(status)


def test_the_pdf_shows_the_prescription_as_text_and_is_deterministic() -> None:
    url = "https://rx.example/api/v1/prescriptions/verify/rx-1"
    view = printing.printed(DOC, {"pat-1": "Eve <Example>"}, url)
    pdf = printing.render_pdf(view)
    assert pdf.startswith(b"%PDF-")
    assert hashlib.sha256(printing.render_pdf(view)).digest() == hashlib.sha256(pdf).digest()
    text = pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    for shown in ("Eve <Example>", "doc-1", "Amoxicillin (ATC J01CA04)", "500 mg",
                  "Oral route", "3 times per 1 d", "7 d", "21 {capsule}",
                  '#eval("x") *b*', "2027-03-01 09:05", url):
        assert shown in text, shown
    assert "<svg" in printing.qr_svg(url)


def test_the_configured_signing_key_is_secret_and_checked_at_start() -> None:
    """The seed never shows in the settings' repr (logs, tracebacks) and a malformed one
    stops the service at start-up rather than failing every print with a 500."""
    from pydantic import ValidationError

    from healthflow.prescription.settings import Settings

    seed = keys.b64url(keys.new_seed())
    settings = Settings(signing_key=seed)
    assert seed not in repr(settings) and seed not in str(settings.model_dump())
    for bad in ("too-short", keys.b64url(b"\x00" * 31), "not base64 !"):
        with pytest.raises(ValidationError) as refused:
            Settings(signing_key=bad)
        assert bad not in str(refused.value)
