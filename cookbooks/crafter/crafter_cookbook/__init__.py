"""The Crafter cookbook's code.

It lives in this package, not beside ``container.py`` as a package named ``crafter``, because a folder named
``crafter`` that is importable would shadow the real ``crafter`` package from PyPI that the cookbook runs.
``cookbooks/crafter`` therefore has no ``__init__.py``; its scripts put their own folder (and ``cookbooks/``, for the
shared ``cookbook_kit``) on ``sys.path`` and import ``crafter_cookbook``.

- :mod:`crafter_cookbook.game`: the real crafter environment, made exact and fast (no pixels), the text
  observation, and the environment's own rules (crafter's ``data.yaml``) used to explain what a press needed;
- :mod:`crafter_cookbook.data`: the task rows (world seeds) of the train and test splits;
- :mod:`crafter_cookbook.policy`: the ``scripted`` policy (offline) that follows a plan written in the candidate;
- :mod:`crafter_cookbook.llm_policy`: the ``llm`` policy (an OpenAI-compatible chat-completions endpoint);
- :mod:`crafter_cookbook.feedback`: the rollout's feedback for the proposer;
- :mod:`crafter_cookbook.app`: the container;
- :mod:`crafter_cookbook.proposer`: the deterministic offline proposer (codex app-server protocol over stdio).
"""
