"""Banking77 data for the cookbook: find the files, load the rows, fix the id order.

Banking77 (Casanueva et al. 2020, arXiv:2003.04807; CC BY 4.0) is 13,083 online-banking queries labelled with 77
intents. The project never ships the data files; it looks for a data directory, in this order:

1. an explicit directory (``load(data_dir=...)``, the container's ``--data-dir`` flag);
2. the ``BANKING77_DATA_DIR`` environment variable;
3. ``../shared/data/banking77`` next to the repository (where the tests, the benchmarks and the demo find it);
4. a user cache, ``~/.cache/synth_opt/banking77`` (``$XDG_CACHE_HOME`` respected), which ``download()`` fills from
   the public source (``python data.py --download``); when none of the above exists it is downloaded into
   automatically unless ``BANKING77_NO_DOWNLOAD=1`` (``load(download=True)`` downloads even then); a failed
   download falls through;
5. only then a tiny sample written by this project (hand-written queries for a few labels), announced loudly on
   stderr: it shows the machinery works, it is no benchmark.

Each row is ``{"task_id", "text", "label"}``. ``task_id`` is ``"<split>-<index>"`` with the 0-based row index in the
file (``train-00042``). The files are sorted by label, so each split's ids are listed in a fixed shuffled order:
``random.Random(77).shuffle`` of the ids in file order (seed 77, one fresh generator per split). ``{count = N}`` in
a config therefore takes a mix of labels, and the same N ids on every machine.
"""

from __future__ import annotations

import csv
import json
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_VAR",
    "ORDER_SEED",
    "SOURCE_URLS",
    "DataSource",
    "default_cache_dir",
    "download",
    "load",
    "shared_data_dir",
]

ENV_VAR = "BANKING77_DATA_DIR"
NO_DOWNLOAD_ENV_VAR = "BANKING77_NO_DOWNLOAD"
ORDER_SEED = 77
FILES = ("train.csv", "test.csv", "categories.json")
SOURCE_COMMIT = "c57ec275d8078af65b7731c2a98be812d844a6d6"
SOURCE_URLS = {
    name: f"https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/{SOURCE_COMMIT}/banking_data/{name}"
    for name in FILES
}


@dataclass(frozen=True, slots=True)
class DataSource:
    """Where the rows came from (``kind``: flag, env, shared, cache, download or sample) and the rows themselves.

    ``train_rows`` and ``test_rows`` are already in the listed (shuffled) order.
    """

    kind: str
    path: str | None
    train_rows: list[dict[str, str]] = field(repr=False)
    test_rows: list[dict[str, str]] = field(repr=False)
    labels: list[str] = field(repr=False)

    def rows(self, split: str) -> list[dict[str, str]]:
        if split == "train":
            return self.train_rows
        if split == "test":
            return self.test_rows
        raise KeyError(split)

    def describe(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return (
            f"banking77 data: {self.kind}{where} ({len(self.train_rows)} train rows, "
            f"{len(self.test_rows)} test rows, {len(self.labels)} labels)"
        )


def shared_data_dir() -> Path:
    """``../shared/data/banking77`` beside the repository (the repository root is two levels above this folder)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "banking77"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "synth_opt" / "banking77"


def _complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in FILES)


def load(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_sample: bool = True,
) -> DataSource:
    """Find the data (module docstring order) and load it."""
    if data_dir is not None:
        return _load_dir(Path(data_dir), kind="flag", origin="the --data-dir flag")
    env_dir = os.environ.get(ENV_VAR, "").strip()
    if env_dir:
        return _load_dir(Path(env_dir), kind="env", origin=f"${ENV_VAR}")
    shared = shared_data_dir()
    if _complete(shared):
        return _load_dir(shared, kind="shared", origin="the shared data folder")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if _complete(cache):
        return _load_dir(cache, kind="cache", origin="the user cache")
    download_allowed = os.environ.get(NO_DOWNLOAD_ENV_VAR, "") not in {"1", "true", "yes"}
    if download or download_allowed:
        try:
            fetch(cache)
        except Exception as exc:  # a failed download falls through to the next source
            print(f"banking77: download into {cache} failed: {exc}", file=sys.stderr)
        else:
            return _load_dir(cache, kind="download", origin="the download")
    if not allow_sample:
        raise FileNotFoundError(
            f"no Banking77 data found: pass --data-dir, set {ENV_VAR}, put the files in {shared} or {cache}"
        )
    _announce_sample()
    return _sample_source()


def _load_dir(directory: Path, *, kind: str, origin: str) -> DataSource:
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Banking77 data directory {directory} (from {origin}) lacks {', '.join(missing)}; "
            f"it needs {', '.join(FILES)} (download them with `python data.py --download`)"
        )
    labels = json.loads((directory / "categories.json").read_text(encoding="utf-8"))
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ValueError(f"{directory / 'categories.json'} must be a JSON list of label names")
    return DataSource(
        kind=kind,
        path=str(directory),
        train_rows=_read_split(directory / "train.csv", "train"),
        test_rows=_read_split(directory / "test.csv", "test"),
        labels=list(labels),
    )


def _read_split(path: Path, split: str) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"text", "category"} <= set(reader.fieldnames):
            raise ValueError(f"{path} must have the columns text,category")
        pairs = [(row["text"], row["category"]) for row in reader]
    return shuffled_rows(split, pairs)


def shuffled_rows(split: str, pairs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """Rows with ids from their file position, listed in the fixed order ``random.Random(77).shuffle`` gives."""
    rows = [
        {"task_id": f"{split}-{index:05d}", "text": text, "label": label} for index, (text, label) in enumerate(pairs)
    ]
    random.Random(ORDER_SEED).shuffle(rows)
    return rows


def fetch(directory: Path) -> None:
    """Download the public files into ``directory`` with a progress bar (each file written atomically)."""
    import httpx
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    directory.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with (
        Progress(*columns, console=Console(stderr=True)) as progress,
        httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=True) as client,
    ):
        for name, url in SOURCE_URLS.items():
            target = directory / name
            partial = directory / f".{name}.partial"
            with client.stream("GET", url) as response:
                response.raise_for_status()
                total = int(response.headers.get("content-length", 0)) or None
                task = progress.add_task(f"banking77 {name}", total=total)
                with partial.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
                        progress.advance(task, len(chunk))
            partial.replace(target)


def download(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    fetch(directory)
    return directory


def _announce_sample() -> None:
    bar = "!" * 100
    print(
        f"{bar}\n"
        "!! banking77: NO REAL DATA FOUND. Using the tiny sample this project wrote itself\n"
        f"!! ({len(SAMPLE)} labels, a few hand-written queries each). Scores on it mean nothing; the demo's\n"
        f"!! 500-row heldout needs the real data: pass --data-dir, set {ENV_VAR}, or run `python data.py --download`.\n"
        f"{bar}",
        file=sys.stderr,
    )


# Hand-written by this project (not taken from Banking77): (train queries, test queries) per label.
SAMPLE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "card_arrival": (
        (
            "It has been ten days and the card you mailed me is nowhere to be seen.",
            "Is my new card on its way yet?",
            "The postman still hasn't brought my card, what now?",
        ),
        ("My card never showed up in the mail.", "How do I track the card you sent me?"),
    ),
    "exchange_rate": (
        (
            "Which rate do you use when I swap pounds for euros?",
            "How is the conversion rate between currencies decided?",
            "Where can I see today's rate for dollars?",
        ),
        ("What conversion rate will I get for yen?", "Is your currency rate the market one?"),
    ),
    "lost_or_stolen_card": (
        (
            "Someone took my wallet with my card inside it.",
            "I can't find my card anywhere, I think I dropped it.",
            "My card was stolen on the train this morning.",
        ),
        ("I misplaced my card yesterday, please block it.", "A thief has my card, what should I do?"),
    ),
    "pin_blocked": (
        (
            "I typed the wrong PIN three times and now it is locked.",
            "My PIN does not work any more after too many tries.",
            "How can I unlock my PIN?",
        ),
        ("The machine says my PIN is blocked.", "Too many wrong PIN attempts, help me unlock it."),
    ),
    "cancel_transfer": (
        (
            "I sent money to the wrong person, can I stop the transfer?",
            "Please undo the payment I just made to my landlord.",
            "Is it possible to call back a transfer I made an hour ago?",
        ),
        ("Can I still reverse the transfer I set up today?", "Stop the money I sent by mistake."),
    ),
    "declined_card_payment": (
        (
            "The shop refused my card at the till.",
            "Why was my card payment rejected at the restaurant?",
            "My purchase online keeps getting declined.",
        ),
        ("The card payment failed at the supermarket.", "Why does the store decline my card?"),
    ),
    "top_up_limits": (
        (
            "What is the most I can add to my account in one go?",
            "Is there a maximum amount for topping up?",
            "How much money can I load each month?",
        ),
        ("Is there a cap on how much I can top up?", "What are the limits for adding funds?"),
    ),
    "change_pin": (
        (
            "I'd like to pick a new PIN for my card.",
            "How do I set a different PIN?",
            "Can I update my PIN at a cash machine?",
        ),
        ("Where do I go to choose another PIN?", "I want to change the PIN I was given."),
    ),
    "cash_withdrawal_charge": (
        (
            "Why did I pay a fee for taking out cash?",
            "Do you charge me for using an ATM?",
            "There is a charge on my statement after I withdrew money.",
        ),
        ("How much does it cost to get cash from a machine?", "I was billed for an ATM withdrawal."),
    ),
    "terminate_account": (
        (
            "I want to close my account for good.",
            "How do I delete my profile and everything in it?",
            "Please shut down my account, I am leaving.",
        ),
        ("Can you close my account today?", "I no longer want this account, remove it."),
    ),
}


def _sample_source() -> DataSource:
    labels = list(SAMPLE)
    train = [(text, label) for label, (queries, _) in SAMPLE.items() for text in queries]
    test = [(text, label) for label, (_, queries) in SAMPLE.items() for text in queries]
    return DataSource(
        kind="sample",
        path=None,
        train_rows=shuffled_rows("train", train),
        test_rows=shuffled_rows("test", test),
        labels=labels,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python data.py [--data-dir DIR] [--download]``: say which data would be used (downloading if asked)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", default=None, help="an explicit Banking77 data directory")
    parser.add_argument("--download", action="store_true", help="download the public files into the user cache")
    args = parser.parse_args(argv)
    if args.download:
        download()
    source = load(args.data_dir)
    summary: dict[str, Any] = {"kind": source.kind, "path": source.path}
    summary |= {"train_rows": len(source.train_rows), "test_rows": len(source.test_rows)}
    summary["labels"] = len(source.labels)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
