"""URL secrets, redacted: user-info passwords and every query value, in urls, in free text, in events and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth_opt.errors import ContainerContractError
from synth_opt.events import EventBus, UnknownEvent
from synth_opt.events.model import Event
from synth_opt.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:secret@host:8/v1?key=secret&model=m", "http://user:***@host:8/v1?key=***&model=***"),
        ("https://secret@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
        ("http://host/?secret", "http://host/?***"),
        ("http://host/x#access_token=secret&a=b", "http://host/x#access_token=***&a=***"),
        ("http://host:80/plain/path", "http://host:80/plain/path"),
        ("https://host/page#section", "https://host/page#section"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_finds_urls_in_free_text_and_keeps_the_rest() -> None:
    text = "POST http://u:secret@127.0.0.1:5/v1?key=secret failed (see https://x.test/?a=secret). Retry."
    assert redact_text(text) == "POST http://u:***@127.0.0.1:5/v1?key=*** failed (see https://x.test/?a=***). Retry."
    assert redact_text("no url here: key=secret") == "no url here: key=secret"


def test_every_event_is_redacted_but_task_content_is_kept(tmp_path: Path) -> None:
    feed = tmp_path / "events.jsonl"
    bus = EventBus(feed)
    seen: list[Event] = []
    bus.on_event(seen.append)
    bus.emit(
        UnknownEvent(
            "x.y",
            {
                "url": "http://u:secret@h/?k=secret",
                "nested": {"errors": ["GET http://h/?token=secret failed"]},
                "payload": {"instruction": "see https://docs.test/page?id=3"},
            },
        ),
        "connecting to http://u:secret@h/?k=secret",
    )
    bus.close()
    line = feed.read_text()
    assert "secret" not in line and "secret" not in json.dumps(seen[0].fields) + seen[0].message
    assert seen[0].fields["url"] == "http://u:***@h/?k=***"
    assert seen[0].fields["payload"] == {"instruction": "see https://docs.test/page?id=3"}  # a candidate's text


def test_an_error_never_carries_a_url_secret() -> None:
    error = ContainerContractError("GET http://u:secret@h/?key=secret/health failed", url="http://u:secret@h/")
    assert "secret" not in error.message and "secret" not in error.one_line()
    assert error.detail["url"] == "http://u:***@h/"
