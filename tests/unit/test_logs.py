"""Log lines: JSON objects (or text) whose exceptions show classes and frames, never messages."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from hms.observability.logs import JsonLines, Text, config
from hms.settings import Settings, SettingsError


def record(exc: bool = False, **fields: object) -> logging.LogRecord:
    info = None
    if exc:
        message = "Key (mrn)=(A" + "00042) already exists"  # data, as a driver quotes it
        try:
            raise ValueError(message)
        except ValueError:
            info = sys.exc_info()
    made = logging.LogRecord("hms.access", logging.INFO, __file__, 1, "request", None, info)
    made.fields = fields
    return made


def test_a_json_line_carries_its_fields_and_drops_empty_ones() -> None:
    line = json.loads(JsonLines().format(record(operation="Ward", sql=1, cost=None)))
    assert line["msg"] == "request"
    assert (line["level"], line["logger"]) == ("info", "hms.access")
    assert (line["operation"], line["sql"]) == ("Ward", 1)
    assert "cost" not in line
    assert line["ts"].endswith("+00:00")


@pytest.mark.parametrize("formatter", [JsonLines(), Text()])
def test_an_exception_is_described_by_class_and_frames_never_its_message(
    formatter: logging.Formatter,
) -> None:
    text = formatter.format(record(exc=True))
    assert "ValueError" in text
    assert "test_logs.py" in text
    assert "A00042" not in text


def test_the_server_config_routes_uvicorn_through_one_handler_without_access_lines() -> None:
    made = config("warning", "json")
    assert made["root"]["level"] == "WARNING"
    assert made["formatters"]["hms"]["()"].endswith("JsonLines")
    assert made["loggers"]["uvicorn.access"]["propagate"] is False
    assert config("info", "text")["formatters"]["hms"]["()"].endswith("Text")


def test_log_settings() -> None:
    assert (Settings.from_env({}).log_level, Settings.from_env({}).log_format) == ("info", "text")
    prod = Settings.from_env({"HMS_ENV": "prod", "HMS_JWT_SECRET": "x" * 32})
    assert prod.log_format == "json"
    assert Settings.from_env({"HMS_LOG_LEVEL": "DEBUG"}).log_level == "debug"
    for name, value in (("HMS_LOG_LEVEL", "loud"), ("HMS_LOG_FORMAT", "xml")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})
