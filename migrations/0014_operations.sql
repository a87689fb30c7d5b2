-- Operations: the record of backups and restore drills (what "backup age" and "last drill" are
-- measured from), and one function that reports the state of the whole installation to the
-- metrics endpoint — counts and times only, never a tenant's data.

-- One row per finished backup or drill, written once. The file is named as the operator chose it
-- (a path of their backup volume); no personal data.
CREATE TABLE backup_runs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  kind text NOT NULL CHECK (kind IN ('backup', 'drill')),
  trigger text NOT NULL CHECK (trigger IN ('operator', 'schedule')),
  outcome text NOT NULL CHECK (outcome IN ('success', 'failed')),
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL CHECK (finished_at >= started_at),
  backup_id text CHECK (char_length(backup_id) <= 100),
  file text CHECK (char_length(file) <= 1000),
  bytes bigint CHECK (bytes >= 0),
  rows bigint CHECK (rows >= 0),
  -- Drills: when the restored backup was taken (recovery point) and how long the restore and its
  -- verification took (recovery time).
  backup_taken_at timestamptz,
  recovery_seconds double precision CHECK (recovery_seconds >= 0),
  error text CHECK (char_length(error) <= 500),
  node text NOT NULL CHECK (char_length(node) BETWEEN 1 AND 200)
);
CREATE INDEX backup_runs_recent ON backup_runs (kind, outcome, finished_at DESC);
REVOKE UPDATE, DELETE, TRUNCATE ON backup_runs FROM {{runtime_role}};

-- The installation at a glance, for /metrics: across tenants, and therefore counts and times
-- only. SECURITY DEFINER because row-level security hides every tenant from the runtime role; the
-- owner reads these tables through read-only policies of its own (as for the other owner functions).
CREATE POLICY owner_maintenance ON audit_checkpoints FOR SELECT TO {{owner_role}} USING (true);
CREATE POLICY owner_maintenance ON dial_attempts FOR SELECT TO {{owner_role}} USING (true);
CREATE POLICY owner_maintenance ON inbound_calls FOR SELECT TO {{owner_role}} USING (true);
CREATE POLICY owner_maintenance ON agent_states FOR SELECT TO {{owner_role}} USING (true);
-- Read on every scrape (every 5 s per node): these keep it to a few index pages at any size.
CREATE INDEX inbound_calls_queued ON inbound_calls (tenant_id) WHERE state = 'queued';
CREATE INDEX dial_attempts_in_progress ON dial_attempts (tenant_id) WHERE state IN ('dialing', 'answered', 'connected');
CREATE INDEX audit_checkpoints_signed_at ON audit_checkpoints (signed_at);
CREATE FUNCTION operations_status() RETURNS TABLE (
  unsealed_events bigint,
  oldest_unsealed_at timestamptz,
  newest_checkpoint_at timestamptz,
  calls_in_progress bigint,
  calls_queued bigint,
  agents_available bigint,
  agents_busy bigint,
  agents_paused bigint,
  campaigns_active bigint,
  imports_running bigint,
  last_backup_at timestamptz,
  last_drill_at timestamptz,
  last_drill_recovery_seconds double precision
)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT
      (SELECT count(*) FROM audit_events WHERE leaf_index IS NULL),
      (SELECT min(occurred_at) FROM audit_events WHERE leaf_index IS NULL),
      (SELECT max(signed_at) FROM audit_checkpoints),
      (SELECT count(*) FROM dial_attempts WHERE state IN ('dialing', 'answered', 'connected')),
      (SELECT count(*) FROM inbound_calls WHERE state = 'queued'),
      (SELECT count(*) FROM agent_states WHERE state = 'available'),
      (SELECT count(*) FROM agent_states WHERE state IN ('reserved', 'on_call', 'wrap_up')),
      (SELECT count(*) FROM agent_states WHERE state = 'paused'),
      (SELECT count(*) FROM campaigns WHERE state = 'active'),
      (SELECT count(*) FROM contact_imports WHERE state = 'running'),
      (SELECT max(finished_at) FROM backup_runs WHERE kind = 'backup' AND outcome = 'success'),
      (SELECT max(finished_at) FROM backup_runs WHERE kind = 'drill' AND outcome = 'success'),
      (SELECT recovery_seconds FROM backup_runs WHERE kind = 'drill' AND outcome = 'success' ORDER BY finished_at DESC LIMIT 1)
  $$;
REVOKE ALL ON FUNCTION operations_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION operations_status() TO {{runtime_role}};
