"""The workspace schema, as an ordered list of migrations.

Migration *i* takes a database from ``PRAGMA user_version`` *i* to *i + 1*; ``SCHEMA_VERSION`` is their count. A
migration is a tuple of single statements (never a script: ``executescript`` would commit the open transaction).

``event_stream_events`` is the source table: one row per ``events.jsonl`` line, with the whole event. Every other
run table is derived from it by :mod:`synth_opt.workspace.projector` (``manifests`` from ``result_manifest.json``),
so a repair can drop derived rows and rebuild them. Each derived row carries the ``sequence_number`` of the event
that produced it.
"""

from __future__ import annotations

__all__ = ["DERIVED_TABLES", "HEALTH_TABLES", "MIGRATIONS", "SCHEMA_VERSION", "SERVICE_TABLES"]

# Projection freshness and invariant reports: in every workspace, and in the service's queue database too.
HEALTH_TABLES: tuple[str, ...] = (
    """CREATE TABLE projection_freshness (
        run_id TEXT NOT NULL, table_name TEXT NOT NULL, source TEXT NOT NULL, source_rows INTEGER NOT NULL,
        derived_rows INTEGER NOT NULL, missing_rows INTEGER NOT NULL, status TEXT NOT NULL,
        missing_sample_json TEXT NOT NULL, checked_at TEXT NOT NULL,
        PRIMARY KEY (run_id, table_name)
    )""",
    """CREATE TABLE invariant_reports (
        report_id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, checked_at TEXT NOT NULL,
        status TEXT NOT NULL, missing_json TEXT NOT NULL, stale_tables_json TEXT NOT NULL, repair_hint TEXT,
        report_json TEXT NOT NULL
    )""",
    "CREATE INDEX invariant_reports_run ON invariant_reports (run_id, report_id)",
)

_V1: tuple[str, ...] = (
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        status TEXT,
        status_seq INTEGER NOT NULL DEFAULT -1,
        error TEXT,
        created_at TEXT,
        updated_at TEXT,
        last_sequence_number INTEGER,
        config_path TEXT,
        config_digest TEXT,
        stop_reason TEXT,
        seed_candidate_id TEXT,
        best_candidate_id TEXT,
        best_mean_score REAL,
        best_seq INTEGER NOT NULL DEFAULT -1,
        seed_train_score REAL,
        best_train_score REAL
    )""",
    """CREATE TABLE event_stream_events (
        run_id TEXT NOT NULL,
        sequence_number INTEGER NOT NULL,
        type TEXT NOT NULL,
        message TEXT NOT NULL,
        ts TEXT NOT NULL,
        lane TEXT,
        is_decision INTEGER NOT NULL,
        candidate_id TEXT,
        rollout_id TEXT,
        proposal_index INTEGER,
        projected_tables TEXT NOT NULL DEFAULT ',',
        payload_json TEXT NOT NULL,
        fields_json TEXT GENERATED ALWAYS AS (json_extract(payload_json, '$.fields')) VIRTUAL,
        PRIMARY KEY (run_id, sequence_number)
    )""",
    "CREATE INDEX event_stream_events_type ON event_stream_events (run_id, type)",
    """CREATE TABLE state_transitions (
        run_id TEXT NOT NULL, sequence_number INTEGER NOT NULL, state TEXT NOT NULL, at TEXT NOT NULL,
        error TEXT, stop_reason TEXT, detail_json TEXT NOT NULL,
        PRIMARY KEY (run_id, sequence_number)
    )""",
    """CREATE TABLE candidates (
        run_id TEXT NOT NULL, candidate_id TEXT NOT NULL, parent_ids_json TEXT NOT NULL, module TEXT,
        proposal_index INTEGER, is_seed INTEGER NOT NULL, sequence_number INTEGER NOT NULL, registered_at TEXT,
        PRIMARY KEY (run_id, candidate_id)
    )""",
    "CREATE INDEX candidates_proposal ON candidates (run_id, proposal_index)",
    """CREATE TABLE candidate_statuses (
        run_id TEXT NOT NULL, sequence_number INTEGER NOT NULL, candidate_id TEXT NOT NULL, status TEXT NOT NULL,
        reason TEXT, proposal_index INTEGER, pool_index INTEGER, mean_score REAL, scores_json TEXT,
        entry_json TEXT NOT NULL,
        PRIMARY KEY (run_id, sequence_number)
    )""",
    "CREATE INDEX candidate_statuses_candidate ON candidate_statuses (run_id, candidate_id, sequence_number)",
    """CREATE TABLE candidate_payloads (
        run_id TEXT NOT NULL, candidate_id TEXT NOT NULL, payload_json TEXT NOT NULL, payload_sha256 TEXT NOT NULL,
        module_count INTEGER NOT NULL, sequence_number INTEGER NOT NULL,
        PRIMARY KEY (run_id, candidate_id),
        FOREIGN KEY (run_id, candidate_id) REFERENCES candidates (run_id, candidate_id) ON DELETE CASCADE
    )""",
    """CREATE TABLE candidate_deltas (
        run_id TEXT NOT NULL, candidate_id TEXT NOT NULL, parent_id TEXT NOT NULL, module TEXT NOT NULL,
        kind TEXT NOT NULL, proposal_index INTEGER, old_text_sha256 TEXT, new_text_sha256 TEXT, new_text TEXT,
        sequence_number INTEGER NOT NULL,
        PRIMARY KEY (run_id, candidate_id, parent_id, module),
        FOREIGN KEY (run_id, candidate_id) REFERENCES candidates (run_id, candidate_id) ON DELETE CASCADE
    )""",
    """CREATE TABLE acceptance_decisions (
        run_id TEXT NOT NULL, proposal_index INTEGER NOT NULL, candidate_id TEXT NOT NULL, accepted INTEGER NOT NULL,
        reason TEXT NOT NULL, parent_sum REAL, child_sum REAL, sequence_number INTEGER NOT NULL, decided_at TEXT,
        PRIMARY KEY (run_id, proposal_index)
    )""",
    """CREATE TABLE frontier_cells (
        run_id TEXT NOT NULL, sequence_number INTEGER NOT NULL, front_key TEXT NOT NULL, candidate_id TEXT NOT NULL,
        pool_version INTEGER, pool_size INTEGER,
        PRIMARY KEY (run_id, sequence_number, front_key, candidate_id)
    )""",
    "CREATE INDEX frontier_cells_key ON frontier_cells (run_id, front_key, sequence_number)",
    """CREATE TABLE plan_links (
        run_id TEXT NOT NULL, sequence_number INTEGER NOT NULL, link_kind TEXT NOT NULL, source_id TEXT NOT NULL,
        target_id TEXT NOT NULL, proposal_index INTEGER, kind TEXT, module TEXT, pool_version INTEGER,
        PRIMARY KEY (run_id, sequence_number, link_kind, source_id, target_id)
    )""",
    "CREATE INDEX plan_links_proposal ON plan_links (run_id, proposal_index)",
    """CREATE TABLE rollouts (
        run_id TEXT NOT NULL, rollout_id TEXT NOT NULL, candidate_id TEXT, task_id TEXT, stage TEXT,
        stage_kind TEXT, proposal_index INTEGER, status TEXT NOT NULL, reward REAL, error TEXT,
        duration_seconds REAL, event_type TEXT NOT NULL, sequence_number INTEGER NOT NULL, completed_at TEXT,
        PRIMARY KEY (run_id, rollout_id)
    )""",
    "CREATE INDEX rollouts_status ON rollouts (run_id, status)",
    "CREATE INDEX rollouts_candidate ON rollouts (run_id, candidate_id)",
    """CREATE TABLE scores (
        run_id TEXT NOT NULL, rollout_id TEXT NOT NULL, objective TEXT NOT NULL, value REAL,
        candidate_id TEXT, task_id TEXT, stage TEXT, sequence_number INTEGER NOT NULL,
        PRIMARY KEY (run_id, rollout_id, objective),
        FOREIGN KEY (run_id, rollout_id) REFERENCES rollouts (run_id, rollout_id) ON DELETE CASCADE
    )""",
    "CREATE INDEX scores_objective ON scores (run_id, objective)",
    """CREATE TABLE evidence_frames (
        run_id TEXT NOT NULL, rollout_id TEXT NOT NULL, frame_kind TEXT NOT NULL, candidate_id TEXT,
        task_id TEXT, stage TEXT, status TEXT NOT NULL, reward REAL, trace_digest TEXT, feedback TEXT, error TEXT,
        calls INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL, cost_usd REAL, duration_seconds REAL, verifier_job_count INTEGER NOT NULL,
        sequence_number INTEGER NOT NULL,
        PRIMARY KEY (run_id, rollout_id),
        FOREIGN KEY (run_id, rollout_id) REFERENCES rollouts (run_id, rollout_id) ON DELETE CASCADE
    )""",
    "CREATE INDEX evidence_frames_kind ON evidence_frames (run_id, frame_kind)",
    """CREATE TABLE trace_annotations (
        run_id TEXT NOT NULL, sequence_number INTEGER NOT NULL, position INTEGER NOT NULL, proposal_index INTEGER,
        candidate_id TEXT, module TEXT, task_id TEXT, reward REAL, feedback TEXT,
        PRIMARY KEY (run_id, sequence_number, position)
    )""",
    """CREATE TABLE verifier_jobs (
        run_id TEXT NOT NULL, rollout_id TEXT NOT NULL, position INTEGER NOT NULL, job_id TEXT, kind TEXT,
        status TEXT NOT NULL, detail_json TEXT NOT NULL, sequence_number INTEGER NOT NULL,
        PRIMARY KEY (run_id, rollout_id, position),
        FOREIGN KEY (run_id, rollout_id) REFERENCES rollouts (run_id, rollout_id) ON DELETE CASCADE
    )""",
    "CREATE INDEX verifier_jobs_status ON verifier_jobs (run_id, status)",
    """CREATE TABLE subagent_invocations (
        run_id TEXT NOT NULL, sequence_number INTEGER NOT NULL, proposal_index INTEGER, backend TEXT, model TEXT,
        outcome TEXT NOT NULL, error TEXT, texts INTEGER, duration_seconds REAL, calls INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL,
        cost_usd REAL, invoked_at TEXT,
        PRIMARY KEY (run_id, sequence_number)
    )""",
    """CREATE TABLE cache_accesses (
        run_id TEXT NOT NULL, sequence_number INTEGER NOT NULL, boundary TEXT NOT NULL, action TEXT NOT NULL,
        cache_key TEXT, namespace TEXT NOT NULL, accessed_at TEXT, detail_json TEXT NOT NULL,
        PRIMARY KEY (run_id, sequence_number)
    )""",
    "CREATE INDEX cache_accesses_group ON cache_accesses (run_id, namespace, boundary, action)",
    """CREATE TABLE cache_profiles (
        run_id TEXT NOT NULL, namespace TEXT NOT NULL, boundary TEXT NOT NULL, hits INTEGER NOT NULL,
        misses INTEGER NOT NULL, writes INTEGER NOT NULL, accesses INTEGER NOT NULL,
        first_sequence_number INTEGER, last_sequence_number INTEGER,
        PRIMARY KEY (run_id, namespace, boundary)
    )""",
    """CREATE TABLE usage_ledger (
        run_id TEXT NOT NULL, sequence_number INTEGER NOT NULL, boundary TEXT NOT NULL, rollout_id TEXT,
        proposal_index INTEGER, invocation_sequence_number INTEGER, source TEXT NOT NULL, calls INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL,
        cost_usd REAL, recorded_at TEXT,
        PRIMARY KEY (run_id, sequence_number)
    )""",
    "CREATE INDEX usage_ledger_boundary ON usage_ledger (run_id, boundary)",
    "CREATE INDEX usage_ledger_rollout ON usage_ledger (run_id, rollout_id)",
    """CREATE TABLE stopper_states (
        run_id TEXT NOT NULL, sequence_number INTEGER NOT NULL, event_type TEXT NOT NULL, proposal_index INTEGER,
        generation INTEGER, rollouts_used INTEGER, train_rollouts_used INTEGER, heldout_rollouts_used INTEGER,
        train_cap INTEGER, remaining_train_rollouts INTEGER, proposer_calls INTEGER, tokens_used INTEGER,
        cost_usd REAL, max_cost_usd REAL, candidate_id TEXT, accepted INTEGER, rejected INTEGER, stop_reason TEXT,
        budget_stop_observed INTEGER NOT NULL, completion_observed INTEGER NOT NULL, reserved_json TEXT,
        observed_at TEXT,
        PRIMARY KEY (run_id, sequence_number)
    )""",
    """CREATE TABLE checkpoints (
        run_id TEXT NOT NULL, sequence_number INTEGER NOT NULL, commits INTEGER, state TEXT, generation INTEGER,
        candidate_id TEXT, best_candidate_id TEXT, candidate_count INTEGER, frontier_count INTEGER,
        rollouts INTEGER, cost_usd REAL, usage_json TEXT, payload_json TEXT NOT NULL, written_at TEXT,
        PRIMARY KEY (run_id, sequence_number)
    )""",
    """CREATE TABLE manifests (
        run_id TEXT PRIMARY KEY, manifest_path TEXT, status TEXT, stop_reason TEXT, best_candidate_id TEXT,
        cost_usd REAL, workspace_db_path TEXT, written_at TEXT NOT NULL, manifest_json TEXT NOT NULL
    )""",
    *HEALTH_TABLES,
)

# 2: the rollouts a run did not make, its evaluations reused (budget.updated's ``reused``)
_V2: tuple[str, ...] = ("ALTER TABLE stopper_states ADD COLUMN rollouts_reused INTEGER",)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)

# Rebuilt by a repair, children before parents (foreign keys cascade from candidates and rollouts).
DERIVED_TABLES: tuple[str, ...] = (
    "state_transitions",
    "candidate_payloads",
    "candidate_deltas",
    "candidates",
    "candidate_statuses",
    "acceptance_decisions",
    "frontier_cells",
    "plan_links",
    "scores",
    "evidence_frames",
    "verifier_jobs",
    "rollouts",
    "trace_annotations",
    "subagent_invocations",
    "cache_accesses",
    "cache_profiles",
    "usage_ledger",
    "stopper_states",
    "checkpoints",
    "runs",
)

# Present in a service database (the run queue adds them).
SERVICE_TABLES: tuple[str, ...] = ("run_requests", "operations", "resource_leases")
