"""Structured JSON logs with context fields and secret redaction."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from throttle_app.telemetry.logs import (
    JsonFormatter,
    RedactingFilter,
    bind,
    clear_context,
    configure_logging,
    current_context,
    log_context,
    redacting_filter,
    unbind,
)

CLIENT_SECRET = "cs-7f3e9a1b-4c2d-11ee-be56-0242ac120002"
DB_PASSWORD = "pg-Hunter2-s3cr3t"
CONFIG_TOKEN = "cfg_tok_ABCDEFGHIJKLMNOP"
SECRETS = (CLIENT_SECRET, DB_PASSWORD, CONFIG_TOKEN, "short", "")
ALL = (CLIENT_SECRET, DB_PASSWORD, CONFIG_TOKEN)


@pytest.fixture
def capture() -> Iterator[Callable[[], list[dict]]]:
    """Configure logging onto a StringIO; yield a reader of the JSON lines; restore the root."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("DEBUG", secrets=SECRETS, stream=stream)

    def read() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    read.stream = stream  # type: ignore[attr-defined]
    try:
        yield read
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)
        redacting_filter().set_secrets(())
        clear_context()


def _text(read: Callable[[], list[dict]]) -> str:
    return read.stream.getvalue()  # type: ignore[attr-defined]


def test_json_shape(capture: Callable[[], list[dict]]) -> None:
    log = logging.getLogger("throttle.test.shape")
    log.info("released %d records", 3, extra={"queue": "q1"})
    log.warning("second line\nwith newline")
    (first, second) = capture()
    assert first["message"] == "released 3 records"
    assert first["level"] == "INFO"
    assert first["logger"] == "throttle.test.shape"
    assert first["queue"] == "q1"
    assert first["timestamp"].endswith("Z")
    assert datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00")).utcoffset() == (
        datetime.fromisoformat("2000-01-01T00:00:00+00:00").utcoffset()
    )
    assert "exc_info" not in first
    assert second["level"] == "WARNING" and second["message"] == "second line\nwith newline"
    assert len(_text(capture).splitlines()) == 2


def test_context_fields(capture: Callable[[], list[dict]]) -> None:
    log = logging.getLogger("throttle.test.ctx")
    bind(request_id="r-1")
    with log_context(job_id="j-9", portal_id=42, queue="default") as fields:
        assert fields == {"request_id": "r-1", "job_id": "j-9", "portal_id": 42, "queue": "default"}
        log.info("inside", extra={"queue": "explicit"})
    log.info("outside")
    unbind("request_id")
    log.info("unbound")
    inside, outside, unbound = capture()
    assert inside["request_id"] == "r-1" and inside["job_id"] == "j-9"
    assert inside["portal_id"] == 42
    assert inside["queue"] == "explicit"  # explicit extra wins over the bound field
    assert outside["request_id"] == "r-1" and "job_id" not in outside
    assert "request_id" not in unbound
    assert current_context() == {}


def test_context_isolated_between_threads(capture: Callable[[], list[dict]]) -> None:
    log = logging.getLogger("throttle.test.threads")
    barrier = threading.Barrier(2)

    def work(n: int) -> None:
        with log_context(request_id=f"req-{n}"):
            barrier.wait()
            log.info("from %d", n)
            barrier.wait()
            log.info("again %d", n)

    bind(request_id="main")
    threads = [threading.Thread(target=work, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.info("main thread")
    lines = capture()
    assert len(lines) == 5
    for line in lines[:4]:
        assert line["request_id"] == f"req-{line['message'].split()[-1]}"
    assert lines[4]["request_id"] == "main"


def test_literal_secrets_redacted_everywhere(capture: Callable[[], list[dict]]) -> None:
    log = logging.getLogger("throttle.test.secrets")
    log.info("secret in message %s", CLIENT_SECRET)
    log.info("secret in args: %s / %r", DB_PASSWORD, {"k": CONFIG_TOKEN})
    log.info(
        "extras",
        extra={"cfg": CONFIG_TOKEN, "nested": {"a": [DB_PASSWORD]}, "count": 5},
    )
    try:
        raise RuntimeError(f"exploded with {CLIENT_SECRET} and password {DB_PASSWORD}")
    except RuntimeError:
        log.exception("failed")
    log.info("stack %s", "here", stack_info=True)
    with log_context(portal_token=CONFIG_TOKEN):
        log.info("bound secret")
    raw = _text(capture)
    for secret in ALL:
        assert secret not in raw
    lines = capture()
    assert lines[0]["message"] == "secret in message [REDACTED]"
    assert lines[2]["cfg"] == "[REDACTED]"
    assert lines[2]["nested"] == {"a": ["[REDACTED]"]}
    assert lines[2]["count"] == 5
    assert "RuntimeError: exploded with [REDACTED]" in lines[3]["exc_info"]
    assert "Traceback" in lines[3]["exc_info"]
    assert "stack_info" in lines[4]
    assert lines[5]["portal_token"] == "[REDACTED]"


def test_short_secrets_ignored() -> None:
    f = RedactingFilter(["abc", "", "     x", "longenough"])
    assert f.redact("abc x longenough") == "abc x [REDACTED]"


def test_url_encoded_secret_redacted() -> None:
    f = RedactingFilter(["p@ss/word!"])
    assert f.redact("raw p@ss/word! quoted p%40ss%2Fword%21 end") == (
        "raw [REDACTED] quoted [REDACTED] end"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.DEF-123_x", "Authorization: Bearer [REDACTED]"),
        ("{'Authorization': 'Bearer eyJhbGciOi.xyz=='}", "{'Authorization': '[REDACTED]'}"),
        ("sent bearer CJSP5qf1KhICAQEY then", "sent bearer [REDACTED] then"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [REDACTED]"),
        (
            '{"access_token": "at-1", "expires_in": 1800}',
            '{"access_token": "[REDACTED]", "expires_in": 1800}',
        ),
        (
            '{"refresh_token":"rt-\\"q\\"-2","hub_id":7}',
            '{"refresh_token":"[REDACTED]","hub_id":7}',
        ),
        (
            "{'client_secret': 'xyz', 'code': 'c0de'}",
            "{'client_secret': '[REDACTED]', 'code': '[REDACTED]'}",
        ),
        ('{"password": "pw", "token": "t"}', '{"password": "[REDACTED]", "token": "[REDACTED]"}'),
        (
            "grant_type=refresh_token&client_id=abc&client_secret=s3&refresh_token=rt-9&x=1",
            "grant_type=refresh_token&client_id=abc&client_secret=[REDACTED]"
            "&refresh_token=[REDACTED]&x=1",
        ),
        (
            "GET /api/oauth/callback?code=abc-123&state=s1",
            "GET /api/oauth/callback?code=[REDACTED]&state=s1",
        ),
        ("token=tt&token_type_hint=access_token", "token=[REDACTED]&token_type_hint=access_token"),
        ("dbname=x password=pw123 host=h", "dbname=x password=[REDACTED] host=h"),
        (
            "postgresql://throttle:PASS@db:5432/throttle",
            "postgresql://throttle:***@db:5432/throttle",
        ),
        ("redis://:r3d1s@cache:6379/0 ok", "redis://:***@cache:6379/0 ok"),
        ("postgresql+psycopg2://u:p/w:x@h/d", "postgresql+psycopg2://u:***@h/d"),
        ("status_code=500 exit code", "status_code=500 exit code"),
        ("https://api.hubapi.com:443/crm/v3", "https://api.hubapi.com:443/crm/v3"),
        ('{"token_type": "bearer", "hub_id": 1}', '{"token_type": "bearer", "hub_id": 1}'),
        (
            'TokenGrant(access_token=\'na1-abc\', refresh_token="na1-d\\"ef")',
            "TokenGrant(access_token='[REDACTED]', refresh_token=\"[REDACTED]\")",
        ),
        ("refresh_token: na1-abc-123, hub_id: 7", "refresh_token: [REDACTED], hub_id: 7"),
        ("Authorization:Basic dXNlcjpwYXNz", "Authorization:Basic [REDACTED]"),
        ("status_code: 500, token_type: bearer", "status_code: 500, token_type: bearer"),
    ],
)
def test_pattern_redaction(text: str, expected: str) -> None:
    assert RedactingFilter().redact(text) == expected


def test_patterns_in_records(capture: Callable[[], list[dict]]) -> None:
    log = logging.getLogger("throttle.test.patterns")
    log.info("headers %s", {"Authorization": "Bearer tok-AAAA"})
    log.info("body", extra={"body": "refresh_token=rt-BBBB&client_id=1"})
    log.info("connecting to %s", "postgresql://u:pw-CCCC@db/x")
    raw = _text(capture)
    for value in ("tok-AAAA", "rt-BBBB", "pw-CCCC"):
        assert value not in raw


def test_configure_is_idempotent(capture: Callable[[], list[dict]]) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    stream = io.StringIO()
    configure_logging("INFO", secrets=["another-secret-value"], stream=stream)
    configure_logging("INFO", secrets=["another-secret-value"], stream=stream)
    assert len(root.handlers) == before
    assert root.level == logging.INFO
    logging.getLogger("throttle.test.idem").info("once another-secret-value")
    logging.getLogger("throttle.test.idem").debug("filtered out by level")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == "once [REDACTED]"
    assert _text(capture) == ""  # the replaced handler no longer writes


def test_unknown_level_rejected() -> None:
    with pytest.raises(ValueError):
        configure_logging("LOUD", stream=io.StringIO())


def test_text_mode(capture: Callable[[], list[dict]]) -> None:
    stream = io.StringIO()
    configure_logging("INFO", secrets=SECRETS, json_lines=False, stream=stream)
    with log_context(job_id="j1"):
        logging.getLogger("throttle.test.text").info("hello %s", CLIENT_SECRET)
    line = stream.getvalue()
    assert "hello [REDACTED]" in line and "job_id=j1" in line and CLIENT_SECRET not in line


def test_bad_format_string_does_not_crash(
    capture: Callable[[], list[dict]], capsys: pytest.CaptureFixture[str]
) -> None:
    log = logging.getLogger("throttle.test.bad")
    log.info("%d records for %s", "not-a-number")  # wrong type and too few args
    log.info("%s %s", CLIENT_SECRET)
    log.info("after")
    lines = capture()
    assert len(lines) == 3
    assert "unformattable" in lines[0]["message"]
    assert CLIENT_SECRET not in lines[1]["message"]
    assert lines[2]["message"] == "after"
    assert "Logging error" not in capsys.readouterr().err


def test_filter_never_raises() -> None:
    class Exploding:
        def __str__(self) -> str:
            raise RuntimeError("boom")

        __repr__ = __str__

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", (Exploding(),), None)
    record.weird = Exploding()
    assert RedactingFilter(["secret-value"]).filter(record) is True
    assert isinstance(record.getMessage(), str)
    assert isinstance(JsonFormatter().format(record), str)


def test_one_record_per_line_whatever_values_hold(capture: Callable[[], list[dict]]) -> None:
    """json.dumps escapes control characters; U+0085, U+2028 and U+2029 are escaped too, so
    readers that split on Unicode line boundaries still see one record per line."""
    hostile = 'path\\"quote"\x00\x1b\n\r\x85\u2028\u2029end'
    logging.getLogger("throttle.test.lines").info("seen %s", hostile, extra={"agent": hostile})
    text = _text(capture)
    assert len(text.splitlines()) == 1
    (line,) = capture()
    assert line["message"] == f"seen {hostile}" and line["agent"] == hostile
