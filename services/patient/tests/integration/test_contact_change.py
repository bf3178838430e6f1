"""Issue 16, account lifecycle: ``user.contact_changed`` (sealed under the person key)
replaces the profile's telecom, the newest change winning; after an erasure a late change
brings nothing back."""

from __future__ import annotations

import uuid

from .conftest import PERSON_KEYS, PatientService
from .test_erasure import raw_text


def changed(pid: str, email: str, phone: str | None) -> dict[str, object]:
    return PERSON_KEYS.contact_changed(pid, email=email, phone=phone,
                                       changed=["email", "phone"])


async def test_the_profile_takes_the_new_address_and_number(psvc: PatientService) -> None:
    pid = await psvc.register(f"pat-{uuid.uuid4().hex[:8]}")
    me = psvc.tokens.headers(pid, roles=["patient"])
    await psvc.deliver("user.contact_changed", changed(pid, f"new-{pid}@example.org",
                                                       "+4930111222"))
    chart = (await psvc.client.get("/api/v1/patients/me", headers=me)).json()
    assert chart["telecom"] == {"email": f"new-{pid}@example.org", "phone": "+4930111222"}


async def test_a_late_change_after_the_erasure_brings_nothing_back(
        psvc: PatientService) -> None:
    pid = await psvc.register(f"pat-{uuid.uuid4().hex[:8]}")
    late = changed(pid, f"late-{pid}@example.org", "+4930333444")
    PERSON_KEYS.erase(pid)
    await psvc.deliver("user.erased", {"user_id": pid, "erased_by": "admin-1"})
    await psvc.deliver("user.contact_changed", late)
    after = await raw_text(psvc)
    assert f"late-{pid}".encode() not in after and b"+4930333444" not in after
