"""The log formatters and the handler setup (real logging, real streams)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from ragwall.telemetry import configure_logging, event


def restore_logging(handler: logging.Handler) -> None:
    """Undo :func:`configure_logging` for the tests that follow."""
    logging.getLogger().removeHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("ragwall", "uvicorn"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.captureWarnings(False)


@pytest.fixture(autouse=True)
def _restore():
    yield
    for h in [h for h in logging.getLogger().handlers if h.get_name() == "ragwall-stderr"]:
        restore_logging(h)


def _logger_to(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    configure_logging(fmt, "DEBUG", stream=stream)  # type: ignore[arg-type]
    return logging.getLogger("ragwall.test"), stream


def test_json_lines_carry_fields_at_the_top_level_and_drop_nones():
    logger, stream = _logger_to("json")
    event(logger, "request", route="/v1/retrieve", status=200, query=None, stages_ms={"embed": 1.5})
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["message"] == "request" and line["level"] == "info"
    assert line["logger"] == "ragwall.test" and line["time"].endswith("+00:00")
    assert line["route"] == "/v1/retrieve" and line["status"] == 200
    assert line["stages_ms"] == {"embed": 1.5}
    assert "query" not in line


def test_json_lines_keep_exceptions_on_one_line():
    logger, stream = _logger_to("json")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) == 1
    assert "ValueError: boom" in json.loads(lines[0])["exception"]


def test_text_lines_are_for_people():
    logger, stream = _logger_to("text")
    event(logger, "request", route="/v1/retrieve", status=401, stages_ms={"embed": 1.5})
    line = stream.getvalue().strip().splitlines()[-1]
    assert "INFO" in line and "request" in line
    assert "route=/v1/retrieve" in line and "status=401" in line and "stages_ms=embed:1.5" in line
    assert not line.startswith("{")


def test_auto_is_json_off_a_terminal_and_reconfiguring_replaces_the_handler():
    stream = io.StringIO()  # not a tty
    configure_logging("auto", "INFO", stream=stream)
    configure_logging("auto", "INFO", stream=stream)
    logging.getLogger("ragwall.test").info("once")
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["message"] == "once"


def test_uvicorn_lines_go_through_the_same_handler():
    # as an earlier uvicorn in this process may have left it (a server run at log level warning)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").disabled = True
    _, stream = _logger_to("json")
    logging.getLogger("uvicorn.error").info("Started server process")
    assert json.loads(stream.getvalue().strip().splitlines()[-1])["logger"] == "uvicorn.error"


def test_libraries_log_warnings_only_and_python_warnings_become_records():
    import warnings

    logger, stream = _logger_to("json")
    logging.getLogger("some.library").info("chatter")
    logging.info("root chatter")
    logger.debug("ours")
    warnings.warn("deprecated thing", UserWarning, stacklevel=1)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [x["message"] for x in lines if x["logger"] != "py.warnings"] == ["ours"]
    assert any("deprecated thing" in x["message"] for x in lines if x["logger"] == "py.warnings")
