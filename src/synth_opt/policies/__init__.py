"""Helpers for the policies a task container runs (code on the container's side of the wire, not the optimizer's).

- :mod:`synth_opt.policies.chat`: the chat-completions call of an ``llm`` policy, with usage and cost.
"""
