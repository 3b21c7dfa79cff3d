"""The run browser (``synth-opt view --runs DIR``): runs, a run's lineage and decisions, a candidate's text as a
diff against its parent, the score chart and the heldout table, read from the runs' workspaces (read-only, so a
running run is shown live). Server-rendered pages with no script."""

from synth_opt.view.app import serve_view, view_app

__all__ = ["serve_view", "view_app"]
