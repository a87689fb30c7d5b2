-- Audit retention: the one way events ever leave the ledger (src/audit/retention.ts,
-- `ringvakt audit prune`). An operator with the owner's rights removes the oldest sealed events up
-- to a signed checkpoint; their leaf hashes stay behind as level-0 tree nodes, so every later
-- checkpoint and proof still verifies, and a signed retention record says who removed what, when,
-- why and under which cut-off. The runtime role can neither call the procedure nor write records.

-- Level 0 holds the leaf hashes of pruned events (the events themselves are gone).
ALTER TABLE audit_tree_nodes DROP CONSTRAINT audit_tree_nodes_level_check;
ALTER TABLE audit_tree_nodes ADD CONSTRAINT audit_tree_nodes_level_check CHECK (level BETWEEN 0 AND 62);

CREATE TABLE audit_retention_records (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id bigint GENERATED ALWAYS AS IDENTITY,
  -- Events with leaf_index below this were removed; it is the size of a signed checkpoint.
  pruned_before_leaf bigint NOT NULL CHECK (pruned_before_leaf > 0),
  -- The root of the tree of that size: what the retained leaf hashes must still add up to.
  root_hash bytea NOT NULL CHECK (octet_length(root_hash) = 32),
  cutoff timestamptz NOT NULL,
  reason text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
  executed_at timestamptz NOT NULL,
  executed_by text NOT NULL CHECK (char_length(executed_by) BETWEEN 1 AND 200),
  signing_key_id text NOT NULL,
  signature bytea NOT NULL CHECK (octet_length(signature) = 64),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, pruned_before_leaf)
);
ALTER TABLE audit_retention_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_retention_records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_retention_records
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_retention_records FROM {{runtime_role}};
CREATE TRIGGER audit_retention_records_append_only BEFORE UPDATE OR DELETE ON audit_retention_records
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_retention_records_no_truncate BEFORE TRUNCATE ON audit_retention_records
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- DELETE on audit_events is refused (to the owner too), except for rows that a retention record
-- written in this same transaction covers, named in the transaction-local setting
-- ringvakt.audit_retention. Setting it alone is not enough: the record must exist, be this
-- transaction's own and cover the row, and the row's leaf hash must already be kept (level 0).
CREATE FUNCTION audit_events_guard() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  record_id text := current_setting('ringvakt.audit_retention', true);
BEGIN
  -- Nested, not ANDed: plpgsql would evaluate NEW's fields on DELETE, where there is no NEW.
  IF TG_OP = 'DELETE' THEN
    IF record_id ~ '^[0-9]{1,18}$' AND OLD.leaf_index IS NOT NULL AND EXISTS (
         SELECT 1 FROM ringvakt.audit_retention_records r
          WHERE r.tenant_id = OLD.tenant_id AND r.id = record_id::bigint
            AND OLD.leaf_index < r.pruned_before_leaf
            AND r.xmin::text::bigint = pg_current_xact_id()::text::bigint % 4294967296)
       -- …and only once the event's leaf hash is kept in its place.
       AND EXISTS (
         SELECT 1 FROM ringvakt.audit_tree_nodes n
          WHERE n.tenant_id = OLD.tenant_id AND n.level = 0 AND n.index = OLD.leaf_index AND n.hash = OLD.leaf_hash) THEN
      RETURN OLD;
    END IF;
  ELSIF OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL
     AND (OLD.tenant_id, OLD.id, OLD.occurred_at, OLD.actor_type, OLD.actor_id, OLD.action, OLD.target_type,
          OLD.target_id, OLD.outcome, OLD.source_ip, OLD.request_id, OLD.details, OLD.leaf_hash)
         IS NOT DISTINCT FROM
         (NEW.tenant_id, NEW.id, NEW.occurred_at, NEW.actor_type, NEW.actor_id, NEW.action, NEW.target_type,
          NEW.target_id, NEW.outcome, NEW.source_ip, NEW.request_id, NEW.details, NEW.leaf_hash) THEN
    -- The sealer giving an unsealed event its leaf index, nothing else changed (as in 0005).
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'the audit ledger is append-only (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER audit_events_append_only ON audit_events;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_guard();

-- The retention procedure. Checks, then keeps the leaf hashes, writes the signed record, and
-- removes the events. The caller (the CLI, as the owner) computed and signed the record; the
-- checks here make sure it describes what is actually removed:
--   * the cut is the size of a signed checkpoint, with that checkpoint's root hash;
--   * it moves forward (after any earlier retention);
--   * every removed event occurred before the stated cut-off.
CREATE FUNCTION audit_apply_retention(
  p_tenant uuid, p_pruned_before bigint, p_root bytea, p_cutoff timestamptz, p_reason text,
  p_executed_at timestamptz, p_executed_by text, p_signing_key_id text, p_signature bytea
) RETURNS bigint
  LANGUAGE plpgsql VOLATILE SET search_path = ringvakt, pg_temp
  AS $$
DECLARE
  previous bigint;
  record_id bigint;
  removed bigint;
BEGIN
  PERFORM set_config('app.tenant_id', p_tenant::text, true);
  PERFORM pg_advisory_xact_lock(hashtextextended('ringvakt:audit-seal:' || p_tenant::text, 0));
  IF NOT EXISTS (SELECT 1 FROM audit_checkpoints WHERE tenant_id = p_tenant AND tree_size = p_pruned_before AND root_hash = p_root) THEN
    RAISE EXCEPTION 'retention must stop at a signed checkpoint (no checkpoint of size % with that root)', p_pruned_before
      USING ERRCODE = 'check_violation';
  END IF;
  SELECT coalesce(max(pruned_before_leaf), 0) INTO previous FROM audit_retention_records WHERE tenant_id = p_tenant;
  IF p_pruned_before <= previous THEN
    RAISE EXCEPTION 'events before leaf % were removed already', previous USING ERRCODE = 'check_violation';
  END IF;
  IF EXISTS (SELECT 1 FROM audit_events WHERE tenant_id = p_tenant AND leaf_index >= previous AND leaf_index < p_pruned_before
              AND occurred_at >= p_cutoff) THEN
    RAISE EXCEPTION 'an event before leaf % occurred at or after the cut-off', p_pruned_before USING ERRCODE = 'check_violation';
  END IF;
  -- A planted level-0 node in the range makes this fail (primary key) rather than be kept.
  INSERT INTO audit_tree_nodes (tenant_id, level, index, hash)
    SELECT tenant_id, 0, leaf_index, leaf_hash FROM audit_events
     WHERE tenant_id = p_tenant AND leaf_index >= previous AND leaf_index < p_pruned_before;
  INSERT INTO audit_retention_records (tenant_id, pruned_before_leaf, root_hash, cutoff, reason, executed_at, executed_by, signing_key_id, signature)
    VALUES (p_tenant, p_pruned_before, p_root, p_cutoff, p_reason, p_executed_at, p_executed_by, p_signing_key_id, p_signature)
    RETURNING id INTO record_id;
  PERFORM set_config('ringvakt.audit_retention', record_id::text, true);
  DELETE FROM audit_events WHERE tenant_id = p_tenant AND leaf_index >= previous AND leaf_index < p_pruned_before;
  GET DIAGNOSTICS removed = ROW_COUNT;
  PERFORM set_config('ringvakt.audit_retention', '', true);
  RETURN removed;
END
$$;
REVOKE EXECUTE ON FUNCTION audit_apply_retention(uuid, bigint, bytea, timestamptz, text, timestamptz, text, text, bytea) FROM PUBLIC, {{runtime_role}};

-- After retention the newest leaves may all be gone: the next leaf follows the larger of the last
-- remaining leaf and the retention cut.
CREATE OR REPLACE FUNCTION audit_assign_leaves(p_ids bigint[]) RETURNS bigint
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
DECLARE
  sealed integer;
  p_first bigint;
BEGIN
  SELECT greatest(
           (SELECT coalesce(max(leaf_index) + 1, 0) FROM audit_events WHERE tenant_id = current_tenant_id()),
           (SELECT coalesce(max(pruned_before_leaf), 0) FROM audit_retention_records WHERE tenant_id = current_tenant_id()))
    INTO p_first;
  UPDATE audit_events e
     SET leaf_index = p_first + o.position - 1
    FROM unnest(p_ids) WITH ORDINALITY AS o(id, position)
   WHERE e.tenant_id = current_tenant_id() AND e.id = o.id AND e.leaf_index IS NULL;
  GET DIAGNOSTICS sealed = ROW_COUNT;
  IF sealed <> cardinality(p_ids) THEN
    RAISE EXCEPTION 'audit sealing raced or was given sealed events' USING ERRCODE = 'serialization_failure';
  END IF;
  RETURN p_first;
END
$$;
