"""JSON log lines carry no terminal colouring: uvicorn's ``color_message`` is dropped, ANSI codes stripped."""

from __future__ import annotations

import json
import logging

from shopkit.logging import JsonFormatter


def test_uvicorn_color_message_is_not_a_json_field() -> None:
    record = logging.makeLogRecord({
        "name": "uvicorn.error", "levelno": 20, "levelname": "INFO",
        "msg": "Started server process [%d]", "args": (1,),
        "color_message": "Started server process [\x1b[36m%d\x1b[0m]",
    })
    line = JsonFormatter("orders").format(record)
    payload = json.loads(line)
    assert "color_message" not in payload
    assert payload["message"] == "Started server process [1]"
    assert "\\u001b" not in line and "\x1b" not in line


def test_ansi_codes_in_a_message_are_stripped() -> None:
    record = logging.makeLogRecord({"name": "x", "levelno": 30, "levelname": "WARNING",
                                    "msg": "\x1b[1mbold\x1b[0m and \x1b[31mred\x1b[0m"})
    assert json.loads(JsonFormatter("gateway").format(record))["message"] == "bold and red"
