"""The tblite cookbook (importable as ``tblite`` with ``cookbooks/`` on ``sys.path``; see README.md)."""
