"""``proposer.prompt_template``: a reflection prompt of the user's own, its placeholders checked at start-up, its
content (not its path) in the decision digest, and what the proposer is sent in a real run (the README's fruit
task, launched by ``[container] task``, with the offline proposer)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from synth_opt import GepaRun, load_config
from synth_opt.errors import ConfigError
from synth_opt.proposers.reflection import (
    DEFAULT_PROMPT_TEMPLATE,
    PROMPT_PLACEHOLDERS,
    ReflectionRequest,
    ReflectiveRecord,
    render_prompt,
    template_problems,
)
from tests.integration.test_python_task import readme_example

TEMPLATE = """You edit the `{module}` text of a fruit quiz.
Text now: <<{current_text}>>
Pool: {frontier_summary}
{task_info}{examples}
Literal braces stay: {{"not": "a placeholder"}}
{instructions}
"""


def fruit_run(folder: Path, template: str | None) -> Path:
    source, config, _ = readme_example()
    (folder / "fruit.py").write_text(source)
    if template is not None:
        (folder / "prompt.md").write_text(template)
        config = config.replace('backend = "offline"', 'backend = "offline"\nprompt_template = "prompt.md"')
    (folder / "fruit.toml").write_text(config)
    return folder / "fruit.toml"


def test_a_run_sends_the_users_template_filled_in(tmp_path: Path) -> None:
    result = GepaRun(load_config(fruit_run(tmp_path, TEMPLATE))).execute()
    assert result.best_train_score == 1.0  # the offline proposer still reads the examples' block
    run_dir = Path(result.manifest_path).parent
    prompt = (run_dir / "proposer_calls" / "p00000.prompt.md").read_text()
    assert prompt.startswith("You edit the `prompt` text of a fruit quiz.\nText now: <<Name some fruit.>>\n")
    assert '"pool_size": 1' in prompt and '{"not": "a placeholder"}' in prompt
    assert "## Task\nThe prompt should name every fruit on the list." in prompt  # the task's docstring
    assert prompt.rstrip().endswith('{"proposals": ["<full replacement text 1>"]}')


def test_the_templates_content_enters_the_digest_and_the_default_leaves_it_as_it_was(tmp_path: Path) -> None:
    plain = load_config(fruit_run(tmp_path, None))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = load_config(fruit_run(tmp_path / "a", TEMPLATE))
    same = load_config(fruit_run(tmp_path / "b", TEMPLATE))  # another path, the same content
    other = load_config(fruit_run(tmp_path / "b", TEMPLATE + "Be brief.\n"))
    assert "prompt_template" not in plain.decision_config()["proposer"]
    assert first.decision_digest() == same.decision_digest() != plain.decision_digest()
    assert other.decision_digest() != first.decision_digest()


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Fix {curent_text}.", "unknown placeholder {curent_text} (did you mean {current_text}?)"),
        ("Fix {}.", "positional placeholder"),
        ("Fix {current_text!r}.", "takes no format spec or conversion"),
        ("Fix {current_text.", "write a literal brace as {{ or }}"),
        ("", "the template is empty; start from DEFAULT_PROMPT_TEMPLATE"),
        (" \n\t\n", "the template is empty"),
        ('Improve the prompt. Reply with JSON {{"proposals": []}}.', "the template has no placeholder"),
    ],
)
def test_a_bad_template_is_a_config_error_naming_the_file(tmp_path: Path, template: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(fruit_run(tmp_path, template))
    message = str(raised.value)
    assert "proposer.prompt_template" in message and "prompt.md" in message and expected in message


def test_a_missing_template_file_is_a_config_error(tmp_path: Path) -> None:
    config = fruit_run(tmp_path, TEMPLATE)
    (tmp_path / "prompt.md").unlink()
    with pytest.raises(ConfigError, match=r"prompt\.md not found"):
        load_config(config)


def test_the_default_template_is_the_built_in_prompt() -> None:
    assert template_problems(DEFAULT_PROMPT_TEMPLATE) == []
    request = ReflectionRequest(
        candidate_id="c",
        candidate={"prompt": "Name {fruit}.", "other": "x"},
        target_module="prompt",
        records=(ReflectiveRecord(task_id="0", task={"fruit": "fig"}, output=None, reward=0.0, feedback="Name fig."),),
        task_info="Name fruit.",
    )
    custom = replace(request, template=DEFAULT_PROMPT_TEMPLATE)
    assert render_prompt(custom) == render_prompt(request)  # the same prompt ...
    assert "prompt_template_sha256" in custom.to_json() and "prompt_template_sha256" not in request.to_json()
    assert json.dumps(custom.prompt_json()) == json.dumps(request.prompt_json())  # ... and block
    assert set(PROMPT_PLACEHOLDERS) >= {"current_text", "examples", "task_info", "frontier_summary", "instructions"}
