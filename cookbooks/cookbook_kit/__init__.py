"""What the cookbooks share, written once, so that each cookbook holds only what is its own (its data, policies,
scoring, feedback and the edits its offline proposer makes) and a new one starts from this kit rather than from a
copy of another cookbook.

- :mod:`cookbook_kit.container`: a task container, written with the public ``synth-containers`` SDK, whose program
  is one mutable system prompt: the descriptive routes, the checks of a ``/taskset/tasks`` and a ``/rollout``
  request, the start-up check route (``POST /health/check``) and the ``--host``/``--port`` script;
- :mod:`cookbook_kit.proposer`: an offline proposer over
  :func:`synth_opt.proposers.stdio_app_server.serve_app_server`: distinct proposals from a request and the
  ``reply_for_turn``/``serve`` pair. It imports no web framework, so a proposer process starts light.

The kit lives beside the cookbooks, not in ``synth_opt``: its container half needs the ``cookbooks`` extra
(``synth-containers`` and FastAPI), which the library does not depend on, and it is example code that a user copies
with a cookbook. The cookbooks' scripts put ``cookbooks/`` on ``sys.path``, so it imports as ``cookbook_kit``.
"""
