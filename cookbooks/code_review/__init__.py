"""The code-review cookbook (importable as ``code_review`` with ``cookbooks/`` on ``sys.path``; see README.md)."""
