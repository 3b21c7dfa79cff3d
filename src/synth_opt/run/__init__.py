"""The run: one GEPA optimization from a config to its result, and what it needs around the search.

- :mod:`~synth_opt.run.execution`: :class:`GepaRun` (the run's life: set-up, search, heldout, result; resume and
  cancel), :class:`RunView` and :class:`RunObserver` for the progress display;
- :mod:`~synth_opt.run.setup`: the pipeline settings, the dataset and seed, config warnings, the proposer's
  start-up check;
- :mod:`~synth_opt.run.container`: the run's container (replayed, launched or reached) and its start-up check;
- :mod:`~synth_opt.run.dataset`: the rows the run uses;
- :mod:`~synth_opt.run.artifacts`, :mod:`~synth_opt.run.checkpoints`: what a run writes, and its durable checkpoint;
- :mod:`~synth_opt.run.lifecycle`: the run's states (``run.state`` events);
- :mod:`~synth_opt.run.resume`: continuing a run from its checkpoint, and the spend thrown away;
- :mod:`~synth_opt.run.cancel`: the cancel handle;
- :mod:`~synth_opt.run.callbacks`: Python observers of a run (``GepaRun(callbacks=[...])``), fed from a thread;
- :mod:`~synth_opt.run.gc_pacing`: the garbage collector paced by the run;
- :mod:`~synth_opt.run.score_chart`: the score chart (SVG);
- :mod:`~synth_opt.run.replay_check`: the three-run replay check (``gepa accept``).
"""

from synth_opt.run.callbacks import GepaCallback
from synth_opt.run.execution import GepaRun, RunObserver, RunView

__all__ = ["GepaCallback", "GepaRun", "RunObserver", "RunView"]
