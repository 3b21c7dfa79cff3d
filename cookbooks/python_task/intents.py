"""Banking77 intents as a task in Python: the score function asks a model to classify one customer message.

The model is any OpenAI-compatible chat endpoint: ``INTENTS_BASE_URL`` (default ``http://127.0.0.1:8080/v1``),
``INTENTS_MODEL`` and ``INTENTS_API_KEY_ENV`` (the name of the variable holding the key, if the endpoint needs
one); a config passes them with ``[container] env``. The data is the real Banking77 (``BANKING77_DATA_DIR``, else
``../shared/data/banking77`` beside the repository): ``LABEL_COUNT`` intents, ``TRAIN_PER_LABEL`` training and
``HELDOUT_PER_LABEL`` heldout messages of each.
"""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path
from typing import Any

import httpx

from synth_opt.task import Score, task

LABEL_COUNT = int(os.environ.get("INTENTS_LABELS", "8"))
USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
TRAIN_PER_LABEL = 3
HELDOUT_PER_LABEL = 2


def data_dir() -> Path:
    named = os.environ.get("BANKING77_DATA_DIR")
    folder = Path(named) if named else Path(__file__).resolve().parents[3] / "shared" / "data" / "banking77"
    if not (folder / "train.csv").is_file():
        raise FileNotFoundError(f"no Banking77 data in {folder}; set BANKING77_DATA_DIR to the folder of train.csv")
    return folder


def load(split: str, per_label: int) -> list[dict[str, str]]:
    labels = json.loads((data_dir() / "categories.json").read_text())[:LABEL_COUNT]
    rows: list[dict[str, str]] = []
    with (data_dir() / f"{split}.csv").open(newline="") as handle:
        for number, record in enumerate(csv.DictReader(handle)):
            label = record["category"]
            if label in labels and sum(row["label"] == label for row in rows) < per_label:
                rows.append({"id": f"{split}-{number}", "text": record["text"], "label": label})
    random.Random(77).shuffle(rows)  # the file is sorted by label: {count = N} then takes a mix
    return rows


TRAIN, HELDOUT = load("train", TRAIN_PER_LABEL), load("test", HELDOUT_PER_LABEL)
LABELS = sorted({row["label"] for row in TRAIN})
SEED = f"Classify the bank customer's message. Reply with one label only, one of: {', '.join(LABELS)}."


async def ask(system: str, message: str) -> tuple[str, dict[str, float]]:
    """One chat completion: the candidate's text as the system message, the customer's as the user's; the reply and
    the tokens the server reported (the run counts them against its token limit)."""
    base_url = os.environ.get("INTENTS_BASE_URL", "http://127.0.0.1:8080/v1").rstrip("/")
    key_env = os.environ.get("INTENTS_API_KEY_ENV")
    headers = {"Authorization": f"Bearer {os.environ[key_env]}"} if key_env else {}
    body: dict[str, Any] = {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": message}],
        "max_tokens": 12,
        "temperature": 0,
    }
    if os.environ.get("INTENTS_MODEL"):
        body["model"] = os.environ["INTENTS_MODEL"]
    async with httpx.AsyncClient(timeout=120) as client:
        response = await client.post(f"{base_url}/chat/completions", json=body, headers=headers)
        response.raise_for_status()  # a failed call is a failed rollout (its error is the proposer's feedback)
        data = response.json()
    usage = {key: float(value) for key, value in (data.get("usage") or {}).items() if key in USAGE_KEYS}
    return str(data["choices"][0]["message"]["content"] or ""), usage


def label_in(reply: str) -> str | None:
    """The first known label the reply names (models add quotes, punctuation and words around it)."""
    words = reply.lower().replace("`", " ").replace('"', " ").replace("'", " ").split()
    return next((word.strip(".,:;") for word in words if word.strip(".,:;") in LABELS), None)


@task(rows=TRAIN, heldout=HELDOUT, seed=SEED, name="banking77_intents")
async def intents(candidate: dict[str, str], row: dict[str, Any]) -> Score:
    """Classify online-banking customer messages into intent labels; the reply must be the label."""
    reply, usage = await ask(candidate["prompt"], row["text"])
    predicted = label_in(reply)
    if predicted == row["label"]:
        return Score(1.0, usage=usage)
    said = predicted or repr(reply.strip()[:60])
    return Score(0.0, f"A message like {row['text']!r} is {row['label']}, not {said}.", usage)
