"""Jinja2 templates per message and locale (``templates/<locale>/<name>.txt|.html``).

Each ``.txt`` template defines three blocks: ``subject`` (email subject),
``short`` (SMS, Web Push and feed body) and ``text`` (the plain-text email part);
each ``.html`` template the HTML email part, autoescaped (HTML only: the text
parts are not HTML and must not be escaped). A missing variable is an error
(``StrictUndefined``), never an empty hole in a patient's message. Amounts arrive as
integer minor units and are shown with the ``money`` filter
(``{{ amount|money(currency, locale) }}``, :func:`money`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency, get_currency_precision
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from healthflow.notification.domain import SUPPORTED_LOCALES

SMS_MAX_CHARS = 320
"""Two concatenated GSM-7 segments: longer SMS bodies are cut with an ellipsis."""


@dataclass(frozen=True)
class Rendered:
    """One message in every form a channel needs."""

    subject: str
    text: str
    html: str
    short: str

    @property
    def sms(self) -> str:
        if len(self.short) <= SMS_MAX_CHARS:
            return self.short
        return self.short[: SMS_MAX_CHARS - 1] + "…"


class Renderer:
    """Renders ``<name>`` in ``<locale>`` (falling back to English)."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("healthflow.notification", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
            trim_blocks=False,
        )
        self.env.filters["money"] = money

    def render(self, name: str, locale: str, context: dict[str, Any]) -> Rendered:
        """Raises: ``jinja2.TemplateNotFound`` for an unknown ``name``; ``UndefinedError``."""
        locale = locale if locale in SUPPORTED_LOCALES else "en"
        base = {"name": None, "doctor": None, "place": None, "online": False,
                "previous_when": None, "link": "", "locale": locale} | context
        text_template = self.env.get_template(f"{locale}/{name}.txt")
        blocks = {}
        for block in ("subject", "short", "text"):
            render = text_template.blocks[block]
            blocks[block] = "".join(render(text_template.new_context(base))).strip()
        html = self.env.get_template(f"{locale}/{name}.html").render(base)
        return Rendered(subject=_one_line(blocks["subject"]), text=blocks["text"] + "\n",
                        html=html, short=_one_line(blocks["short"]))


def money(amount: int, currency: str, locale: str) -> str:
    """``amount`` minor units of ``currency`` (ISO 4217) as ``locale`` writes money: the
    currency's digits from CLDR (EUR 2, JPY 0), so ``6000 EUR`` is ``€60.00`` in ``en``
    and ``60,00 €`` in ``de``; exact (``Decimal``), never a float."""
    value = Decimal(amount).scaleb(-get_currency_precision(currency))
    return str(format_currency(value, currency, locale=locale))


def _one_line(text: str) -> str:
    return " ".join(text.split())
