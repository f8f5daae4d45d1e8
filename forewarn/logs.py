"""Log format shared by the worker, the outreach service and the CLI.

``FOREWARN_LOG_FORMAT=json`` (the default in docker-compose.yml) writes one JSON object per
line, for log shippers; ``text`` (the default on a laptop) writes plain lines. Either way a
filter masks e-mail addresses, phone numbers, bank accounts, card numbers and passwords in
URLs, so personal data or a secret that slips into a message (an exception that quotes a
ticket or a database URL, say) does not reach the log files.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

# Masked wherever they occur in a log message or its arguments.
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# International (+44 20 7946 0958) or grouped (020 7946 0958, 555-123-4567) numbers; bare digit
# runs are offsets and ids, not phones, and stay readable.
PHONE = re.compile(r"(?<![\w.])(?:\+\d[\d ()-]{7,}\d|\(?\d{2,5}\)?[ -]\d{3,4}[ -]\d{3,5})(?![\w.])")
# Bank accounts (DE44 5001 0517 5407 3249 31, with or without spaces) and card numbers in
# groups (4111 1111 1111 1111, 4111-1111-1111-1111); bare digit runs stay readable, as above.
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
CARD = re.compile(r"(?<![\w.])\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}(?![\w.])")
# user:password@ in a URL (a database or broker URL in an error message).
URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][\w+.-]*://[^:/@\s]+:)[^@\s]+@")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d"


def mask_personal_data(text: str) -> str:
    """``text`` with URL passwords, e-mail addresses, bank accounts, card numbers and phone
    numbers replaced by placeholders."""
    text = URL_PASSWORD.sub(r"\g<head><secret>@", text)
    text = CARD.sub("<card>", IBAN.sub("<iban>", EMAIL.sub("<email>", text)))
    return PHONE.sub("<phone>", text)


class PersonalDataFilter(logging.Filter):
    """Masks personal data in every record it sees (installed on handlers, not loggers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            # Render once, then mask: the arguments are where customer text usually hides.
            record.msg, record.args = record.getMessage(), None
        if isinstance(record.msg, str):
            record.msg = mask_personal_data(record.msg)
        return True


def log_format() -> str:
    fmt = os.environ.get("FOREWARN_LOG_FORMAT", "text")
    if fmt not in ("text", "json"):
        raise ValueError(f"FOREWARN_LOG_FORMAT must be 'text' or 'json', not {fmt!r}")
    return fmt


def logging_config(level: str = "INFO", fmt: str | None = None) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for stderr in ``fmt`` (default: the environment's)."""
    fmt = fmt or log_format()
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
        if fmt == "json"
        else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"forewarn": formatter},
        "filters": {"personal_data": {"()": PersonalDataFilter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "forewarn",
                "filters": ["personal_data"],
                "level": level,
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        # uvicorn's loggers bring their own handlers; route them through ours instead.
        "loggers": {
            name: {"handlers": ["default"], "level": level, "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
