"""Fakes that ship with the library, for tests of synth_opt and of code built on it.

- :class:`FakeContainer`: an in-memory task container behind an ``httpx.MockTransport``;
- :class:`FakeOpenAI` and :func:`serve_fake_openai`: a fake OpenAI-compatible server on loopback;
- ``python -m synth_opt.testing.fault_container``: a task container as a real process on loopback that injects
  faults into ``POST /rollout`` by count (5xx, refused, reset, hang, slow body, SIGKILL, malformed, wrong id);
  :func:`synth_opt.testing.fault_container.command` builds its ``[container] command``;
- ``python -m synth_opt.testing.fake_app_server``: a fake codex app-server speaking the protocol over stdio;
- :func:`converse`: one initialize-to-turn conversation with an app-server program (an offline proposer);
- :func:`capture_events`: the typed events a run emits in this process, for assertions on their payloads.
"""

from synth_opt.testing.app_server_session import converse
from synth_opt.testing.capture import CapturedEvents, capture_events
from synth_opt.testing.fake_container import FakeContainer, exact_match_score
from synth_opt.testing.fake_openai import FakeOpenAI, FakeOpenAIError, serve_fake_openai

__all__ = [
    "CapturedEvents",
    "FakeContainer",
    "FakeOpenAI",
    "FakeOpenAIError",
    "capture_events",
    "converse",
    "exact_match_score",
    "serve_fake_openai",
]
