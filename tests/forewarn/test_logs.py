"""Log format: JSON lines for shippers, and no personal data in either format."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from forewarn.logs import logging_config, mask_personal_data


@pytest.fixture
def capture():
    """Configure logging as the worker does, into a buffer; restore afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()

    def configure(fmt: str) -> io.StringIO:
        config = logging_config("INFO", fmt)
        config["handlers"]["default"]["stream"] = stream
        logging.config.dictConfig(config)
        return stream

    yield configure
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def test_json_lines_carry_level_logger_and_message(capture):
    stream = capture("json")
    logging.getLogger("streams.test").warning("lag %d on %s", 12, "orders")
    record = json.loads(stream.getvalue().splitlines()[-1])
    assert record["level"] == "WARNING"
    assert record["logger"] == "streams.test"
    assert record["message"] == "lag 12 on orders"
    assert "time" in record


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_personal_data_is_masked_in_messages_and_arguments(capture, fmt):
    stream = capture(fmt)
    logging.getLogger("outreach.test").error(
        "could not store ticket text %r", "call me at +44 20 7946 0958 or ann.lee@example.com"
    )
    out = stream.getvalue()
    assert "ann.lee@example.com" not in out and "7946 0958" not in out
    assert "<email>" in out and "<phone>" in out


def test_masking_leaves_ids_numbers_and_times_alone():
    text = "device D00042 reading 1234567.5 at 2026-01-05T10:00:00 offset 123456789 p 3-14"
    assert mask_personal_data(text) == text


def test_an_unknown_format_is_refused(monkeypatch):
    monkeypatch.setenv("FOREWARN_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="text' or 'json"):
        logging_config()


def test_passwords_in_urls_are_masked(capture):
    stream = capture("text")
    logging.getLogger("streams.test").error(
        "cannot reach postgresql+psycopg://forewarn:s3cr%40t@db:5432/forewarn"
    )
    out = stream.getvalue()
    assert "s3cr" not in out
    assert "postgresql+psycopg://forewarn:<secret>@db:5432/forewarn" in out


@pytest.mark.parametrize(
    "secret",
    [
        "DE44500105175407324931",
        "DE44 5001 0517 5407 3249 31",
        "GB29NWBK60161331926819",
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
    ],
)
def test_bank_accounts_and_card_numbers_are_masked(secret):
    masked = mask_personal_data(f"customer wrote: pay from {secret} please")
    assert secret not in masked and ("<iban>" in masked or "<card>" in masked), masked
