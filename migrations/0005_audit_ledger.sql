-- The tamper-evident audit ledger (src/audit/). Events are appended in the same transaction as
-- the change they record; a sealer gives them their place in the tenant's Merkle tree
-- (RFC 9162) and signs tree heads. Nothing here can be changed or removed by the runtime role,
-- and triggers refuse it to the owner as well; `ringvakt audit verify` detects what a superuser
-- might still do behind the triggers' back.

CREATE TABLE audit_events (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id bigint GENERATED ALWAYS AS IDENTITY,
  -- Position in the tenant's Merkle tree: NULL until sealed, then set once, never changed.
  leaf_index bigint CHECK (leaf_index >= 0),
  occurred_at timestamptz NOT NULL,
  actor_type text NOT NULL CHECK (actor_type IN ('user', 'api_token', 'system', 'operator', 'anonymous')),
  actor_id text CHECK (char_length(actor_id) <= 200),
  action text NOT NULL CHECK (action ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$'),
  target_type text CHECK (char_length(target_type) <= 100),
  target_id text CHECK (char_length(target_id) <= 200),
  outcome text NOT NULL CHECK (outcome IN ('success', 'denied', 'failed')),
  source_ip text CHECK (char_length(source_ip) <= 45),
  request_id text CHECK (char_length(request_id) <= 64),
  details jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (octet_length(details::text) <= 8192),
  leaf_hash bytea NOT NULL CHECK (octet_length(leaf_hash) = 32),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, leaf_index)
);
CREATE INDEX audit_events_unsealed ON audit_events (tenant_id, id) WHERE leaf_index IS NULL;
ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
-- For the owner's functions below: audit_assign_leaves names the caller's tenant explicitly;
-- tenants_with_unsealed_audit_events returns tenant ids only.
CREATE POLICY owner_maintenance ON audit_events TO {{owner_role}} USING (true) WITH CHECK (true);
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM {{runtime_role}};

-- Perfect subtree hashes of each tenant's tree above the leaves (level ≥ 1): proofs in O(log n).
CREATE TABLE audit_tree_nodes (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  level smallint NOT NULL CHECK (level BETWEEN 1 AND 62),
  index bigint NOT NULL CHECK (index >= 0),
  hash bytea NOT NULL CHECK (octet_length(hash) = 32),
  PRIMARY KEY (tenant_id, level, index)
);
ALTER TABLE audit_tree_nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_tree_nodes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_tree_nodes
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
REVOKE UPDATE, DELETE, TRUNCATE ON audit_tree_nodes FROM {{runtime_role}};

-- Signed tree heads.
CREATE TABLE audit_checkpoints (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  tree_size bigint NOT NULL CHECK (tree_size > 0),
  root_hash bytea NOT NULL CHECK (octet_length(root_hash) = 32),
  signed_at timestamptz NOT NULL,
  signing_key_id text NOT NULL,
  signature bytea NOT NULL CHECK (octet_length(signature) = 64),
  PRIMARY KEY (tenant_id, tree_size)
);
ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_checkpoints
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
REVOKE UPDATE, DELETE, TRUNCATE ON audit_checkpoints FROM {{runtime_role}};

-- Ed25519 keys that sign tree heads; the private key is wrapped by the root key provider.
CREATE TABLE audit_signing_keys (
  key_id text PRIMARY KEY CHECK (char_length(key_id) BETWEEN 1 AND 100),
  public_key bytea NOT NULL,
  root_key_id text NOT NULL,
  wrapped_private_key bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE UPDATE, DELETE, TRUNCATE ON audit_signing_keys FROM {{runtime_role}};

-- Append-only, for every role that fires triggers (the owner included): the one permitted change
-- is the sealer giving an unsealed event its leaf index, everything else about the row unchanged.
CREATE FUNCTION audit_append_only() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  -- Nested, not ANDed: plpgsql would evaluate OLD's fields for tables that do not have them.
  IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_events' THEN
    IF OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL
       AND (OLD.tenant_id, OLD.id, OLD.occurred_at, OLD.actor_type, OLD.actor_id, OLD.action, OLD.target_type,
            OLD.target_id, OLD.outcome, OLD.source_ip, OLD.request_id, OLD.details, OLD.leaf_hash)
           IS NOT DISTINCT FROM
           (NEW.tenant_id, NEW.id, NEW.occurred_at, NEW.actor_type, NEW.actor_id, NEW.action, NEW.target_type,
            NEW.target_id, NEW.outcome, NEW.source_ip, NEW.request_id, NEW.details, NEW.leaf_hash) THEN
      RETURN NEW;
    END IF;
  END IF;
  RAISE EXCEPTION 'the audit ledger is append-only (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;
-- New events arrive unsealed: only the sealing function places them in the tree.
CREATE FUNCTION audit_events_arrive_unsealed() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF NEW.leaf_index IS NOT NULL THEN
    RAISE EXCEPTION 'audit events are inserted unsealed' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_arrive_unsealed BEFORE INSERT ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_arrive_unsealed();
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_tree_nodes_append_only BEFORE UPDATE OR DELETE ON audit_tree_nodes
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_tree_nodes_no_truncate BEFORE TRUNCATE ON audit_tree_nodes
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_signing_keys_append_only BEFORE UPDATE OR DELETE ON audit_signing_keys
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_signing_keys_no_truncate BEFORE TRUNCATE ON audit_signing_keys
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- The sealer's one write to audit_events: the next leaf indices, right after the tenant's last
-- sealed leaf, for unsealed events of the caller's tenant in the given order. Returns the first
-- index given. The caller cannot choose where the leaves go, so it cannot open a gap.
CREATE FUNCTION audit_assign_leaves(p_ids bigint[]) RETURNS bigint
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
DECLARE
  sealed integer;
  p_first bigint;
BEGIN
  SELECT coalesce(max(leaf_index) + 1, 0) INTO p_first FROM audit_events WHERE tenant_id = current_tenant_id();
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

-- Which tenants have events waiting to be sealed: one query per sealer tick instead of a
-- transaction per tenant. Served by the partial index audit_events_unsealed.
CREATE FUNCTION tenants_with_unsealed_audit_events() RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$ SELECT DISTINCT tenant_id FROM audit_events WHERE leaf_index IS NULL $$;
