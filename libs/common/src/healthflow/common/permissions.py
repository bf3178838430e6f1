"""Roles and the permissions they grant: the one declared table.

The auth service puts a user's roles and the union of their permissions in
every access token (RFC 9068 ``roles`` / ``permissions`` claims); every
service checks permissions with :func:`healthflow.common.auth.require`. The
docs render this table (``python -m healthflow.common.permissions``), so it is
never written twice.

Permissions are ``<resource>:<action>``. ``*:own`` permissions are limited to
the caller's own resources by an ownership check in the service
(:func:`healthflow.common.auth.ensure_owner`); ``hospital``-scoped ones to the hospitals
where the caller holds a staff membership (:mod:`healthflow.common.tenancy`; admins and
compliance officers reach every hospital).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    PATIENT = "patient"
    DOCTOR = "doctor"
    PATIENT_CARE = "patient_care"
    PARAMEDIC = "paramedic"
    DISPATCHER = "dispatcher"
    COMPLIANCE_OFFICER = "compliance_officer"
    NURSE = "nurse"
    RECEPTIONIST = "receptionist"
    RADIOGRAPHER = "radiographer"
    ACCOUNTANT = "accountant"
    PHARMACIST = "pharmacist"


STAFF_ROLES = frozenset(Role) - {Role.PATIENT}
"""Roles an admin may give to an account (patients register themselves)."""


class Permission(StrEnum):
    # identity
    PROFILE_READ_OWN = "profile:read_own"
    CREDENTIALS_MANAGE_OWN = "credentials:manage_own"  # own password, address, phone, MFA
    USERS_READ = "users:read"
    USERS_MANAGE = "users:manage"
    USERS_ERASE = "users:erase"  # execute a person's request for erasure (crypto-shredding)
    KEYS_MANAGE = "keys:manage"  # rotate and inspect the token signing keys
    # audit
    AUDIT_READ = "audit:read"
    AUDIT_CHECKPOINT = "audit:checkpoint"  # sign a checkpoint of the audit log on demand
    # platform operations
    PLATFORM_STATUS = "platform:status"
    DEADLETTERS_MANAGE = "deadletters:manage"
    # care directory
    HOSPITALS_REGISTER = "hospitals:register"
    HOSPITALS_VERIFY = "hospitals:verify"
    HOSPITALS_MANAGE = "hospitals:manage"
    DOCTORS_REGISTER_OWN = "doctors:register_own"
    DOCTORS_VERIFY = "doctors:verify"
    SCHEDULE_MANAGE_OWN = "schedule:manage_own"
    SCHEDULE_MANAGE_ANY = "schedule:manage_any"
    # patients
    PATIENTS_READ_OWN = "patients:read_own"
    PATIENTS_WRITE_OWN = "patients:write_own"
    PATIENTS_READ_ANY = "patients:read_any"
    PATIENTS_READ_TREATED = "patients:read_treated"
    # appointments
    APPOINTMENTS_BOOK_OWN = "appointments:book_own"
    APPOINTMENTS_BOOK_ANY = "appointments:book_any"
    APPOINTMENTS_READ_OWN = "appointments:read_own"
    APPOINTMENTS_READ_ANY = "appointments:read_any"
    APPOINTMENTS_MANAGE_OWN = "appointments:manage_own"
    APPOINTMENTS_MANAGE_ANY = "appointments:manage_any"
    # notifications
    NOTIFICATIONS_READ_OWN = "notifications:read_own"
    NOTIFICATIONS_SEARCH = "notifications:search"
    # clinical records (encounters and their entries; healthflow.records)
    RECORDS_READ_OWN = "records:read_own"
    RECORDS_READ_TREATED = "records:read_treated"  # a doctor in a care relationship
    RECORDS_WRITE_TREATED = "records:write_treated"  # the same doctor documents and corrects
    RECORDS_READ_ANY = "records:read_any"  # clinical staff
    ENCOUNTERS_OPEN_ANY = "encounters:open_any"  # a walk-in or emergency for a named doctor
    # prescriptions (FHIR MedicationRequest; healthflow.prescription)
    PRESCRIPTIONS_READ_OWN = "prescriptions:read_own"
    PRESCRIPTIONS_READ_TREATED = "prescriptions:read_treated"  # a doctor who saw the patient
    PRESCRIPTIONS_WRITE_TREATED = "prescriptions:write_treated"  # in their own encounter
    PRESCRIPTIONS_DISPENSE = "prescriptions:dispense"  # reads issued ones and dispenses
    # imaging (X-ray orders, studies; healthflow.xray)
    IMAGING_ORDER = "imaging:order"  # a doctor, in an encounter they conduct
    IMAGING_WORKLIST = "imaging:worklist"  # radiographers and paramedics see open orders
    IMAGING_UPLOAD = "imaging:upload"  # and store the images of an order
    IMAGING_READ_OWN = "imaging:read_own"  # the patient's own studies
    IMAGING_READ_TREATED = "imaging:read_treated"  # a doctor in a care relationship
    IMAGING_REPORT = "imaging:report"  # the same doctor writes and signs the report
    IMAGING_EXPORT_DEIDENTIFIED = "imaging:export_deidentified"  # de-identified copies (teaching)
    # emergencies and paramedic units (healthflow.emergency, healthflow.paramedic)
    EMERGENCIES_RAISE_OWN = "emergencies:raise_own"  # a patient, for themselves
    EMERGENCIES_RAISE_CLINICAL = "emergencies:raise_clinical"  # a clinician, for a patient
    EMERGENCIES_READ_OWN = "emergencies:read_own"
    EMERGENCIES_DISPATCH = "emergencies:dispatch"  # raise for a caller, list, read, status, cancel
    EMERGENCIES_UPDATE_ASSIGNED = "emergencies:update_assigned"  # the unit that accepted it
    PARAMEDICS_MANAGE_OWN = "paramedics:manage_own"  # unit profile, duty, position, tasks
    PARAMEDICS_READ_ANY = "paramedics:read_any"  # units with status and position
    # payments (Stripe PaymentIntents for appointments; healthflow.payment)
    PAYMENTS_READ_OWN = "payments:read_own"  # the patient's own payments and checkout secret
    PAYMENTS_READ_ANY = "payments:read_any"  # platform: every payment, never a client secret
    PAYMENTS_READ_HOSPITAL = "payments:read_hospital"  # finance: their hospitals' payments
    # an online consultation's own patient or doctor joins its room (and sends media)
    TELECONSULTATIONS_JOIN = "teleconsultations:join"
    # the consultation's doctor admits, removes and ends (their own consultations only)
    TELECONSULTATIONS_HOST = "teleconsultations:host"
    # billing (FHIR ChargeItem and Invoice; healthflow.payment)
    INVOICES_READ_OWN = "invoices:read_own"  # the patient's own invoices and billing summary
    INVOICES_MANAGE_HOSPITAL = "invoices:manage_hospital"  # finance of their hospitals (staff)
    CHARGE_ITEMS_WRITE = "charge_items:write"  # a clinician, in an encounter they conduct
    # insurance (FHIR Coverage, Claim, ClaimResponse; healthflow.payment)
    COVERAGES_MANAGE_OWN = "coverages:manage_own"  # own coverages; claims on own invoices
    # clinic finances (expenses, other incomes, monthly P&L; healthflow.payment.finance):
    # only at the hospitals where the caller is an accountant (staff.assigned)
    FINANCE_READ = "finance:read"
    FINANCE_WRITE = "finance:write"


class Scope(StrEnum):
    """How far a permission reaches: over the whole ``platform``, over one ``hospital``'s
    resources (the caller's hospitals), over the caller's ``own`` resources (an ownership
    check in the service), or over the patients they are in a ``care relationship`` with
    (an encounter or appointment with them)."""

    PLATFORM = "platform"
    HOSPITAL = "hospital"
    OWN = "own"
    CARE_RELATIONSHIP = "care relationship"


P = Permission
S = Scope

SCOPES: dict[Permission, tuple[Scope, ...]] = {
    P.PROFILE_READ_OWN: (S.OWN,), P.CREDENTIALS_MANAGE_OWN: (S.OWN,),
    P.USERS_READ: (S.PLATFORM,), P.USERS_MANAGE: (S.PLATFORM,), P.KEYS_MANAGE: (S.PLATFORM,),
    P.USERS_ERASE: (S.PLATFORM,),
    P.AUDIT_READ: (S.PLATFORM,), P.AUDIT_CHECKPOINT: (S.PLATFORM,),
    P.PLATFORM_STATUS: (S.PLATFORM,), P.DEADLETTERS_MANAGE: (S.PLATFORM,),
    # a registrant manages the hospitals they registered; admins every one
    P.HOSPITALS_REGISTER: (S.OWN,), P.HOSPITALS_VERIFY: (S.PLATFORM,),
    P.HOSPITALS_MANAGE: (S.PLATFORM,),
    P.DOCTORS_REGISTER_OWN: (S.OWN,), P.DOCTORS_VERIFY: (S.PLATFORM,),
    P.SCHEDULE_MANAGE_OWN: (S.OWN,), P.SCHEDULE_MANAGE_ANY: (S.PLATFORM,),
    P.PATIENTS_READ_OWN: (S.OWN,), P.PATIENTS_WRITE_OWN: (S.OWN,),
    # staff: the patients of the hospitals where they work (their appointments'/encounters')
    P.PATIENTS_READ_ANY: (S.HOSPITAL,), P.PATIENTS_READ_TREATED: (S.CARE_RELATIONSHIP,),
    # staff: the appointments of the hospitals where they work (healthflow.common.tenancy);
    # admins every hospital's
    P.APPOINTMENTS_BOOK_OWN: (S.OWN,), P.APPOINTMENTS_BOOK_ANY: (S.HOSPITAL,),
    P.APPOINTMENTS_READ_OWN: (S.OWN,), P.APPOINTMENTS_READ_ANY: (S.HOSPITAL,),
    P.APPOINTMENTS_MANAGE_OWN: (S.OWN,), P.APPOINTMENTS_MANAGE_ANY: (S.HOSPITAL,),
    # staff: deliveries about their hospitals' appointments; admins every delivery
    P.NOTIFICATIONS_READ_OWN: (S.OWN,), P.NOTIFICATIONS_SEARCH: (S.HOSPITAL,),
    P.RECORDS_READ_OWN: (S.OWN,), P.RECORDS_READ_TREATED: (S.CARE_RELATIONSHIP,),
    # staff: their hospitals' patients' records, walk-ins at their hospitals
    P.RECORDS_WRITE_TREATED: (S.CARE_RELATIONSHIP,), P.RECORDS_READ_ANY: (S.HOSPITAL,),
    P.ENCOUNTERS_OPEN_ANY: (S.HOSPITAL,),
    P.PRESCRIPTIONS_READ_OWN: (S.OWN,), P.PRESCRIPTIONS_READ_TREATED: (S.CARE_RELATIONSHIP,),
    P.PRESCRIPTIONS_WRITE_TREATED: (S.CARE_RELATIONSHIP,),
    P.PRESCRIPTIONS_DISPENSE: (S.PLATFORM,),
    P.IMAGING_ORDER: (S.CARE_RELATIONSHIP,), P.IMAGING_WORKLIST: (S.PLATFORM,),
    P.IMAGING_UPLOAD: (S.PLATFORM,), P.IMAGING_READ_OWN: (S.OWN,),
    P.IMAGING_READ_TREATED: (S.CARE_RELATIONSHIP,), P.IMAGING_REPORT: (S.CARE_RELATIONSHIP,),
    P.IMAGING_EXPORT_DEIDENTIFIED: (S.CARE_RELATIONSHIP,),
    P.EMERGENCIES_RAISE_OWN: (S.OWN,), P.EMERGENCIES_READ_OWN: (S.OWN,),
    # anywhere, for anyone: an emergency is not refused for want of a care relationship
    P.EMERGENCIES_RAISE_CLINICAL: (S.PLATFORM,),
    P.EMERGENCIES_DISPATCH: (S.PLATFORM,),
    P.EMERGENCIES_UPDATE_ASSIGNED: (S.OWN,),  # the emergencies assigned to the caller's unit
    P.PARAMEDICS_MANAGE_OWN: (S.OWN,), P.PARAMEDICS_READ_ANY: (S.PLATFORM,),
    P.PAYMENTS_READ_OWN: (S.OWN,), P.PAYMENTS_READ_ANY: (S.PLATFORM,),
    P.PAYMENTS_READ_HOSPITAL: (S.HOSPITAL,),
    P.TELECONSULTATIONS_JOIN: (S.OWN,), P.TELECONSULTATIONS_HOST: (S.OWN,),
    P.INVOICES_READ_OWN: (S.OWN,), P.INVOICES_MANAGE_HOSPITAL: (S.HOSPITAL,),
    # an accountant the books of the hospitals they keep (admins too, where they do)
    P.FINANCE_READ: (S.HOSPITAL,), P.FINANCE_WRITE: (S.HOSPITAL,),
    # the encounter's doctor, or finance of its hospital
    P.CHARGE_ITEMS_WRITE: (S.CARE_RELATIONSHIP, S.HOSPITAL),
    P.COVERAGES_MANAGE_OWN: (S.OWN,),
}
"""How far each permission reaches (docs/permissions.md's ``scope`` column); the services
enforce it (ownership, care-relationship and hospital checks)."""

_EVERYONE = {P.PROFILE_READ_OWN, P.CREDENTIALS_MANAGE_OWN, P.NOTIFICATIONS_READ_OWN}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(
        _EVERYONE
        | {
            P.USERS_READ, P.USERS_MANAGE, P.USERS_ERASE, P.KEYS_MANAGE, P.AUDIT_READ,
            P.AUDIT_CHECKPOINT,
            P.PLATFORM_STATUS,
            P.DEADLETTERS_MANAGE, P.HOSPITALS_REGISTER, P.HOSPITALS_VERIFY, P.HOSPITALS_MANAGE,
            P.DOCTORS_VERIFY, P.SCHEDULE_MANAGE_ANY, P.APPOINTMENTS_READ_ANY,
            P.APPOINTMENTS_MANAGE_ANY, P.NOTIFICATIONS_SEARCH, P.PAYMENTS_READ_ANY,
            P.FINANCE_READ, P.FINANCE_WRITE,
        }
    ),
    Role.PATIENT: frozenset(
        _EVERYONE
        | {P.PATIENTS_READ_OWN, P.PATIENTS_WRITE_OWN, P.APPOINTMENTS_BOOK_OWN,
           P.APPOINTMENTS_READ_OWN, P.RECORDS_READ_OWN, P.PRESCRIPTIONS_READ_OWN,
           P.IMAGING_READ_OWN, P.EMERGENCIES_RAISE_OWN, P.EMERGENCIES_READ_OWN,
           P.PAYMENTS_READ_OWN, P.TELECONSULTATIONS_JOIN, P.INVOICES_READ_OWN,
           P.COVERAGES_MANAGE_OWN}
    ),
    Role.DOCTOR: frozenset(
        _EVERYONE
        | {P.DOCTORS_REGISTER_OWN, P.SCHEDULE_MANAGE_OWN, P.PATIENTS_READ_TREATED,
           P.APPOINTMENTS_READ_OWN, P.APPOINTMENTS_MANAGE_OWN, P.HOSPITALS_REGISTER,
           P.RECORDS_READ_TREATED, P.RECORDS_WRITE_TREATED, P.PRESCRIPTIONS_READ_TREATED,
           P.PRESCRIPTIONS_WRITE_TREATED, P.IMAGING_ORDER, P.IMAGING_READ_TREATED,
           P.IMAGING_REPORT, P.IMAGING_EXPORT_DEIDENTIFIED, P.TELECONSULTATIONS_JOIN,
           P.TELECONSULTATIONS_HOST, P.CHARGE_ITEMS_WRITE, P.EMERGENCIES_RAISE_CLINICAL,
           P.EMERGENCIES_READ_OWN}
    ),
    Role.PATIENT_CARE: frozenset(
        _EVERYONE
        | {P.PATIENTS_READ_ANY, P.APPOINTMENTS_BOOK_ANY, P.APPOINTMENTS_READ_ANY,
           P.APPOINTMENTS_MANAGE_ANY, P.NOTIFICATIONS_SEARCH, P.EMERGENCIES_RAISE_CLINICAL,
           P.EMERGENCIES_READ_OWN}
    ),
    Role.PARAMEDIC: frozenset(
        _EVERYONE | {P.PARAMEDICS_MANAGE_OWN, P.EMERGENCIES_UPDATE_ASSIGNED,
                     P.IMAGING_WORKLIST, P.IMAGING_UPLOAD}
    ),
    Role.DISPATCHER: frozenset(
        _EVERYONE | {P.EMERGENCIES_DISPATCH, P.PARAMEDICS_READ_ANY}
    ),
    Role.COMPLIANCE_OFFICER: frozenset(_EVERYONE | {P.AUDIT_READ, P.AUDIT_CHECKPOINT,
                                                    P.USERS_READ}),
    Role.NURSE: frozenset(
        _EVERYONE
        | {P.PATIENTS_READ_ANY, P.APPOINTMENTS_READ_ANY, P.RECORDS_READ_ANY,
           P.ENCOUNTERS_OPEN_ANY, P.EMERGENCIES_RAISE_CLINICAL, P.EMERGENCIES_READ_OWN}
    ),
    Role.RECEPTIONIST: frozenset(
        _EVERYONE
        | {P.APPOINTMENTS_BOOK_ANY, P.APPOINTMENTS_READ_ANY, P.APPOINTMENTS_MANAGE_ANY,
           P.ENCOUNTERS_OPEN_ANY}
    ),
    Role.RADIOGRAPHER: frozenset(_EVERYONE | {P.IMAGING_WORKLIST, P.IMAGING_UPLOAD,
                                              P.PARAMEDICS_MANAGE_OWN}),
    Role.ACCOUNTANT: frozenset(_EVERYONE | {P.PAYMENTS_READ_HOSPITAL, P.INVOICES_MANAGE_HOSPITAL,
                                            P.CHARGE_ITEMS_WRITE, P.FINANCE_READ,
                                            P.FINANCE_WRITE}),
    Role.PHARMACIST: frozenset(_EVERYONE | {P.PRESCRIPTIONS_DISPENSE}),
}


def permissions_for(roles: set[str] | frozenset[str] | list[str]) -> frozenset[str]:
    """The union of the permissions of ``roles`` (unknown role names grant nothing)."""
    granted: set[str] = set()
    for name in roles:
        try:
            granted |= ROLE_PERMISSIONS[Role(name)]
        except ValueError:
            continue
    return frozenset(str(p) for p in granted)


def render_markdown() -> str:
    """The role → permission table as Markdown (for docs/permissions.md)."""
    roles = list(Role)
    lines = ["# Roles and permissions", "",
             "Generated from `healthflow.common.permissions` by `make docs`; do not edit.", "",
             "Scope: `platform` (every resource of its kind), `hospital` (the resources of "
             "the hospitals where the caller holds a staff membership; admins and compliance "
             "officers every hospital's), `own` (the caller's own), `care relationship` "
             "(patients the caller treats: an encounter or appointment with them).", "",
             "| permission | scope | " + " | ".join(r.value for r in roles) + " |",
             "|---|---|" + "---|" * len(roles)]
    for perm in Permission:
        marks = ["✓" if perm in ROLE_PERMISSIONS[r] else "" for r in roles]
        scope = " or ".join(s.value for s in SCOPES[perm])
        lines.append(f"| `{perm.value}` | {scope} | " + " | ".join(marks) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
