"""Drug terms of the prescription service (pure): ingredients, drug classes, routes, units.

No package on PyPI ships a drug terminology with classes for offline use (RxNorm
and the WHO ATC index are licensed downloads or web APIs), so this module holds a
small, documented table of the ingredients the allergy check must know, keyed by
the **WHO ATC** classification (Anatomical Therapeutic Chemical, WHO Collaborating
Centre for Drug Statistics Methodology, https://www.whocc.no/atc_ddd_index/; FHIR
system :data:`ATC_SYSTEM`):

* an **ingredient** is an ATC level-5 code (``J01CA04`` amoxicillin) with the
  names and common synonyms it is written as;
* a **drug class** is a set of ATC code prefixes (``J01C`` penicillins); a coded
  medication whose code is not in the table still gets its class from its prefix.

Classes (:data:`CLASSES`): penicillins (J01C), cephalosporins (J01DB–J01DE, J01DI),
NSAIDs (M01A, and the salicylates N02BA and B01AC06 — aspirin), sulfonamide
antibacterials (J01E; and sulfasalazine A07EC01, a sulfonamide), macrolides
(J01FA). An allergy may name a class itself (``Penicillin``, ``sulfa``, ``NSAIDs``)
or an ingredient, whose class it then covers (an amoxicillin allergy is a
penicillin allergy: the clinical rule for beta-lactam ring allergies).

Names are matched after :func:`normalise` (case-folded, white space collapsed,
``-``/``/``/``+`` spaced), never by substring.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

ATC_SYSTEM = "http://www.whocc.no/atc"
SNOMED_SYSTEM = "http://snomed.info/sct"
UCUM_SYSTEM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class DrugClass:
    """A drug class: its key, display name, ATC prefixes and the words naming it."""

    key: str
    display: str
    atc_prefixes: tuple[str, ...]
    names: tuple[str, ...]


CLASSES: tuple[DrugClass, ...] = (
    DrugClass("penicillins", "Penicillins", ("J01C",),
              ("penicillin", "penicillins", "beta lactam penicillins")),
    DrugClass("cephalosporins", "Cephalosporins",
              ("J01DB", "J01DC", "J01DD", "J01DE", "J01DI"),
              ("cephalosporin", "cephalosporins")),
    DrugClass("nsaids", "Non-steroidal anti-inflammatory drugs",
              ("M01A", "N02BA", "B01AC06"),
              ("nsaid", "nsaids", "non steroidal anti inflammatory drugs", "salicylates")),
    DrugClass("sulfonamides", "Sulfonamides", ("J01E", "A07EC01"),
              ("sulfonamide", "sulfonamides", "sulfa", "sulpha", "sulfa drugs")),
    DrugClass("macrolides", "Macrolides", ("J01FA",), ("macrolide", "macrolides")),
)

INGREDIENTS: dict[str, tuple[str, ...]] = {
    # penicillins
    "J01CA04": ("amoxicillin", "amoxycillin"),
    "J01CA01": ("ampicillin",),
    "J01CE01": ("benzylpenicillin", "penicillin g"),
    "J01CE02": ("phenoxymethylpenicillin", "penicillin v"),
    "J01CF05": ("flucloxacillin",),
    "J01CF01": ("dicloxacillin",),
    "J01CA12": ("piperacillin",),
    "J01CR02": ("amoxicillin and beta lactamase inhibitor", "co amoxiclav",
                "amoxicillin clavulanic acid", "amoxicillin clavulanate", "augmentin"),
    # cephalosporins
    "J01DB01": ("cefalexin", "cephalexin"),
    "J01DB04": ("cefazolin",),
    "J01DC02": ("cefuroxime",),
    "J01DD04": ("ceftriaxone",),
    "J01DD08": ("cefixime",),
    "J01DE01": ("cefepime",),
    # NSAIDs and salicylates
    "M01AE01": ("ibuprofen",),
    "M01AE02": ("naproxen",),
    "M01AE03": ("ketoprofen",),
    "M01AB05": ("diclofenac",),
    "M01AB01": ("indometacin", "indomethacin"),
    "M01AH01": ("celecoxib",),
    "N02BA01": ("acetylsalicylic acid", "aspirin", "asa"),
    # sulfonamides
    "J01EE01": ("sulfamethoxazole and trimethoprim", "co trimoxazole", "cotrimoxazole",
                "sulfamethoxazole trimethoprim", "tmp smx", "bactrim"),
    "J01EC02": ("sulfadiazine",),
    "A07EC01": ("sulfasalazine",),
    # macrolides
    "J01FA01": ("erythromycin",),
    "J01FA09": ("clarithromycin",),
    "J01FA10": ("azithromycin",),
    # common drugs of no class above (named so duplicates are found by code)
    "N02BE01": ("paracetamol", "acetaminophen"),
    "A10BA02": ("metformin",),
    "C09AA05": ("ramipril",),
    "C10AA05": ("atorvastatin",),
}

_BY_NAME: dict[str, str] = {}
_CLASS_BY_NAME: dict[str, DrugClass] = {c_name: c for c in CLASSES for c_name in c.names}


def normalise(text: str) -> str:
    """``text`` as names are compared: NFKC, case-folded, ``-``, ``/``, ``+``, ``,``
    and ``.`` as spaces, runs of white space collapsed (``Co-Amoxiclav`` → ``co amoxiclav``)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[-/+,.()]", " ", folded).split())


for _code, _names in INGREDIENTS.items():
    for _name in _names:
        _BY_NAME[normalise(_name)] = _code


def class_of_code(atc: str) -> DrugClass | None:
    """The class whose ATC prefix ``atc`` starts with (longest prefix first), or ``None``."""
    best: tuple[int, DrugClass] | None = None
    for drug_class in CLASSES:
        for prefix in drug_class.atc_prefixes:
            if atc.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), drug_class)
    return best[1] if best else None


@dataclass(frozen=True)
class Drug:
    """What a medication or an allergy substance is known to be.

    ``ingredient``: the ATC code of the ingredient, or ``None`` (unknown to the
    table and uncoded, or a class); ``drug_class``: its class key, or ``None``;
    ``name``: the normalised text, which identifies an unknown drug.
    """

    name: str
    ingredient: str | None
    drug_class: str | None

    @property
    def key(self) -> str:
        """The identity of the drug for duplicates: its ATC code, else its name."""
        return self.ingredient or f"text:{self.name}"


def identify(text: str, code: str | None = None, system: str | None = None) -> Drug:
    """What ``text`` (optionally coded as ``code`` in ``system``) is.

    An ATC code (system :data:`ATC_SYSTEM`) wins over the text: a level-5 code is an
    ingredient, a shorter one that is a class prefix names the class. Otherwise the
    text is looked up as an ingredient name, then as a class name.
    """
    name = normalise(text)
    if code and system == ATC_SYSTEM:
        atc = code.strip().upper()
        drug_class = class_of_code(atc)
        is_ingredient = len(atc) == 7
        return Drug(name, atc if is_ingredient else None,
                    drug_class.key if drug_class else None)
    atc_code = _BY_NAME.get(name)
    if atc_code is not None:
        found = class_of_code(atc_code)
        return Drug(name, atc_code, found.key if found else None)
    named_class = _CLASS_BY_NAME.get(name)
    return Drug(name, None, named_class.key if named_class else None)


ATC_SUBSTANCE = re.compile(r"[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}")
"""An ATC level-5 code (a chemical substance, e.g. ``J01CA04``): what a medication is coded as."""


def medication_coding_problem(text: str, code: str | None, system: str | None) -> str | None:
    """Why the coding of a *prescribed* medication is refused, or ``None``.

    With system :data:`ATC_SYSTEM` the code decides the safety checks while the text is
    what is printed and dispensed, so they must agree: the code is a level-5 ATC code
    (:data:`ATC_SUBSTANCE`; a class such as ``J01C`` is not a medication), and a text
    that names an ingredient of the table names that code. Other systems are kept
    as given (the text identifies the drug then).
    """
    if system != ATC_SYSTEM or code is None:
        return None
    atc = code.strip().upper()
    if not ATC_SUBSTANCE.fullmatch(atc):
        return f"{code!r} is not an ATC level-5 code (a substance, e.g. J01CA04)"
    named = _BY_NAME.get(normalise(text))
    if named is not None and named != atc:
        return f"{text!r} is ATC {named}, not {atc}"
    return None


class RouteOfAdministration(StrEnum):
    """Routes of administration (FHIR ``Dosage.route``), as SNOMED CT codes' names."""

    ORAL = "oral"
    INTRAVENOUS = "intravenous"
    INTRAMUSCULAR = "intramuscular"
    SUBCUTANEOUS = "subcutaneous"
    TOPICAL = "topical"
    SUBLINGUAL = "sublingual"
    RECTAL = "rectal"
    INHALATION = "inhalation"


ROUTE_CODES: dict[RouteOfAdministration, tuple[str, str]] = {
    RouteOfAdministration.ORAL: ("26643006", "Oral route"),
    RouteOfAdministration.INTRAVENOUS: ("47625008", "Intravenous route"),
    RouteOfAdministration.INTRAMUSCULAR: ("78421000", "Intramuscular route"),
    RouteOfAdministration.SUBCUTANEOUS: ("34206005", "Subcutaneous route"),
    RouteOfAdministration.TOPICAL: ("6064005", "Topical route"),
    RouteOfAdministration.SUBLINGUAL: ("37839007", "Sublingual route"),
    RouteOfAdministration.RECTAL: ("37161004", "Rectal route"),
    RouteOfAdministration.INHALATION: ("447694001", "Respiratory tract route"),
}
"""SNOMED CT (system :data:`SNOMED_SYSTEM`) code and display of each route
(the FHIR R4 ``route-codes`` value set draws on these concepts)."""


def _ucum_parser() -> object:
    from ucumvert import get_ucum_parser  # built once, on first use (~0.4 s)

    return get_ucum_parser()


_PARSER: list[object] = []


def is_ucum(unit: str) -> bool:
    """Whether ``unit`` is a valid UCUM expression (``mg``, ``mL``, ``{tablet}``, ``[iU]``)."""
    if not unit or unit != unit.strip() or len(unit) > 64:
        return False
    if not _PARSER:
        _PARSER.append(_ucum_parser())
    try:
        _PARSER[0].parse(unit)  # type: ignore[attr-defined]
    except Exception:  # lark's parse and lexing errors share no public base class
        return False
    return True
