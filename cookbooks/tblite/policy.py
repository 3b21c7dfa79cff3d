"""The two tblite policies: ``playbook`` (offline, deterministic) and ``llm`` (an OpenAI-compatible endpoint).

``playbook`` is an honest stand-in for a model: which commands it runs is a pure function of the candidate prompt
text and the task row, with no built-in knowledge of any task or technique. It reads the prompt's rule lines::

    when instruction mentions <word> | <word> ...: <shell command with {placeholders}>

A rule *fires* on a task when one of its words occurs in the instruction (compared after a generic tokenizer:
lowercase, split on anything not a letter or digit, a light suffix stemmer, so ``renamed`` matches ``rename``) and
every ``{name}`` placeholder of its command is one of the task's declared parameters (``row["params"]``); the
placeholders are then replaced by the parameter values. Fired rules run in prompt order, one ``bash -c`` each. A
``${...}`` shell expansion is not a placeholder. Everything else in the prompt is ignored by this policy.

``llm`` gives the candidate to a chat model as its system prompt and the task (instruction, parameters, file names)
as the first user message, then runs up to ``max_turns`` turns: each reply's fenced ``bash`` block is run in the
task directory and its exit code and output go back as the next user message; a reply of ``DONE`` (or with no bash
block) ends the episode.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from synth_opt.policies.chat import ChatEndpoint, LlmPolicyError

__all__ = [
    "LlmPolicyError",
    "Rule",
    "fire",
    "parse_rules",
    "run_llm_episode",
    "seed_prompt",
    "stem",
    "stems",
    "task_message",
]

SEED_PROMPT = """\
You are a careful shell agent. You work in the task's directory: read the instruction, look at the files, then run \
shell commands that produce exactly what the instruction asks for, and nothing else.

Playbook (one rule a line; a rule runs when the instruction mentions one of its words and the task declares every \
{placeholder} of its command):
when instruction mentions write | save: touch {output}"""

RULE = re.compile(r"^\s*when instruction mentions\s+(?P<words>[^:]+?)\s*:\s*(?P<command>\S.*?)\s*$", re.IGNORECASE)
PLACEHOLDER = re.compile(r"(?<!\$)\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")
_SPLIT = re.compile(r"[^a-z0-9]+")
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "als", "al", "ed", "es", "s", "e")
_MIN_STEM = 3


def seed_prompt() -> str:
    return SEED_PROMPT


def stem(word: str) -> str:
    """Strip the first matching generic English suffix while at least three characters remain."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            return word[: -len(suffix)]
    return word


def words(text: str) -> list[str]:
    return [word for word in _SPLIT.split(text.lower()) if word]


def stems(text: str) -> set[str]:
    return {stem(word) for word in words(text)}


@dataclass(frozen=True, slots=True)
class Rule:
    line: int
    """0-based line number in the prompt."""
    text: str
    words: tuple[str, ...]
    command: str
    placeholders: tuple[str, ...]


def parse_rules_uncached(prompt: str) -> tuple[Rule, ...]:
    rules = []
    for number, line in enumerate(prompt.splitlines()):
        match = RULE.match(line)
        if match is None:
            continue
        trigger = tuple(word.strip().lower() for word in re.split(r"[|,]", match.group("words")) if word.strip())
        command = match.group("command")
        names = tuple(dict.fromkeys(m.group("name") for m in PLACEHOLDER.finditer(command)))
        if trigger:
            rules.append(Rule(number, line.strip(), trigger, command, names))
    return tuple(rules)


@lru_cache(maxsize=256)
def parse_rules(prompt: str) -> tuple[Rule, ...]:
    """The prompt's playbook rules, in prompt order (cached: one candidate runs on many rows)."""
    return parse_rules_uncached(prompt)


def fire(prompt: str, row: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The playbook policy: (fired rules with their filled commands, rules whose word matched but which lacked a
    parameter). A pure function of the prompt text and the row's instruction and params."""
    instruction = stems(str(row.get("instruction") or ""))
    params = {str(k): str(v) for k, v in (row.get("params") or {}).items()}
    fired: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    for rule in parse_rules(prompt):
        matched = [word for word in rule.words if _mentions(instruction, word)]
        if not matched:
            continue
        lacking = [name for name in rule.placeholders if name not in params]
        if lacking:
            missing.append({"rule": rule.text, "matched": matched, "missing_params": lacking})
            continue
        command = PLACEHOLDER.sub(lambda m: params[m.group("name")], rule.command)
        fired.append({"rule": rule.text, "matched": matched, "command": command})
    return fired, missing


def _mentions(instruction: set[str], word: str) -> bool:
    """A trigger (a word or a phrase) is mentioned when all its stems occur in the instruction."""
    wanted = stems(word)
    return bool(wanted) and wanted <= instruction


# --- llm -----------------------------------------------------------------------------------------------------------


_BASH = re.compile(r"```(?:bash|sh|shell)?[ \t]*\n(.*?)```", re.DOTALL)


def task_message(row: Mapping[str, Any]) -> str:
    params = row.get("params") or {}
    return "\n".join(
        [
            f"Task: {row.get('instruction', '')}",
            f"Files in the working directory: {', '.join(row.get('files') or []) or '(none)'}",
            f"Parameters: {json.dumps(params, sort_keys=True)}",
            "Reply with one ```bash block of commands to run in the working directory, or DONE when the task is done.",
        ]
    )


def _result_message(result: Mapping[str, Any], turns_left: int) -> str:
    return "\n".join(
        [
            f"exit code: {result.get('exit_code')}" + (" (timed out)" if result.get("timed_out") else ""),
            f"stdout:\n{result.get('stdout', '')}",
            f"stderr:\n{result.get('stderr', '')}",
            f"Turns left: {turns_left}. Reply with the next ```bash block, or DONE.",
        ]
    )


def parse_command(reply: str) -> str | None:
    """The commands of a reply's first fenced bash block; None for DONE or a reply without one."""
    match = _BASH.search(reply)
    if match is None:
        return None
    command = match.group(1).strip()
    return command or None


Executor = Callable[[str], Awaitable[Mapping[str, Any]]]


async def run_llm_episode(
    prompt: str,
    row: Mapping[str, Any],
    policy: Mapping[str, Any],
    execute: Executor,
    *,
    transport: Any = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Up to ``policy.config.max_turns`` (4) chat turns; ``execute`` runs one command and returns its result JSON.

    Returns the turns (``reply``, ``command``, ``result``; the result's ``timed_out`` ends the episode) and the
    summed usage (``calls``, token counts, ``cost_usd`` from ``config.input_cost_per_million`` /
    ``output_cost_per_million``).
    """
    endpoint = ChatEndpoint.from_policy(policy, default_max_tokens=512)
    config = policy.get("config") or {}
    try:
        max_turns = int(config.get("max_turns", 4))
    except (TypeError, ValueError) as exc:
        raise LlmPolicyError("policy.config.max_turns must be an integer", status=422) from exc
    if not 1 <= max_turns <= 20:
        raise LlmPolicyError("policy.config.max_turns must be between 1 and 20", status=422)
    messages: list[dict[str, str]] = [
        {"role": "system", "content": prompt},
        {"role": "user", "content": task_message(row)},
    ]
    usage = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost_usd": 0.0}
    turns: list[dict[str, Any]] = []
    async with endpoint.client(transport) as client:
        for turn in range(max_turns):
            reply, call_usage = await endpoint.complete(client, messages)
            for key in usage:
                usage[key] += call_usage[key]
            command = parse_command(reply)
            record: dict[str, Any] = {"turn": turn + 1, "reply": reply, "command": command}
            turns.append(record)
            if command is None:
                break
            result = dict(await execute(command))
            record["result"] = result
            if result.get("timed_out"):
                break
            messages += [
                {"role": "assistant", "content": reply},
                {"role": "user", "content": _result_message(result, max_turns - turn - 1)},
            ]
    return turns, usage
