"""The Banking77 cookbook (importable as ``banking77`` with ``cookbooks/`` on ``sys.path``; see README.md)."""
