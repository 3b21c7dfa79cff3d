"""A task in a few lines of Python: a score function and its rows, served as a container.

::

    from synth_opt.task import task

    @task(rows="questions.jsonl", seed="Answer in one word.")
    def exact(candidate, row):
        return float(ask(candidate["prompt"], row["question"]) == row["answer"])

``synth-opt task serve mymodule:exact --port 8000`` serves it; ``[container] task = "mymodule:exact"`` in a config
launches it as the run's container. The function runs in the container's process, never in the optimizer's.
"""

from synth_opt.task.definition import DEFAULT_MAX_THREADS, SEED_FIELD, Outcome, Score, ScoreFn, Task, load_rows, task
from synth_opt.task.serve import load_task

__all__ = [
    "DEFAULT_MAX_THREADS",
    "SEED_FIELD",
    "Outcome",
    "Score",
    "ScoreFn",
    "Task",
    "load_rows",
    "load_task",
    "task",
]
