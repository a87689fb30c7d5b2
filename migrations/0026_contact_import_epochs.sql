-- An import batch's lookups (dedupe by external id, phone and e-mail blind indexes; suppression of
-- every number) run ahead, on a connection of their own, while the batch before it is still
-- writing; the batch then commits in one round trip. Lookups made ahead are sound only if no other
-- import of the tenant committed since they were made: each batch of any import moves the tenant's
-- import epoch under the tenant's import lock, and a batch whose lookups saw an epoch that another
-- import has since moved is refused (RVI03) and done again under the lock (src/modules/imports/
-- commit-batch.ts). The batch just before it, of the same import under the same lease holder, is
-- the one move allowed: its rows are compared in the worker itself.
--
-- The epoch moves with the import's cursor (rows_done), which every batch of every import updates
-- in its own transaction: by a trigger, so that no worker can commit a batch without moving it —
-- a worker of an earlier version during a rolling upgrade included, which never calls the
-- function below but takes the same import lock.
CREATE TABLE contact_import_epochs (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id) ON DELETE CASCADE,
  epoch bigint NOT NULL CHECK (epoch > 0),
  -- The import whose batch committed last, and the worker that held its lease.
  import_id uuid NOT NULL,
  lease_owner text NOT NULL,
  PRIMARY KEY (tenant_id)
);
ALTER TABLE contact_import_epochs ENABLE ROW LEVEL SECURITY;
ALTER TABLE contact_import_epochs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON contact_import_epochs USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

-- Security invoker: row-level security keeps the write to the tenant whose import it is.
CREATE FUNCTION contact_import_epoch_moves() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    INSERT INTO contact_import_epochs (tenant_id, epoch, import_id, lease_owner) VALUES (NEW.tenant_id, 1, NEW.id, coalesce(NEW.lease_owner, ''))
      ON CONFLICT (tenant_id) DO UPDATE SET epoch = contact_import_epochs.epoch + 1, import_id = EXCLUDED.import_id, lease_owner = EXCLUDED.lease_owner;
    RETURN NULL;
  END
  $$;
CREATE TRIGGER contact_imports_move_epoch AFTER UPDATE OF rows_done ON contact_imports FOR EACH ROW EXECUTE FUNCTION contact_import_epoch_moves();

-- What every import batch does first, in its own transaction, before any write:
--   1. the import's lease row, locked, and still this worker's (else RVI01: the lease is lost);
--   2. the tenant's import lock (imports of one tenant commit one batch at a time), taken only
--      while the lease is this worker's, so a worker that lost it does not queue for the lock;
--   3. the batch's subject keys must be wrapped under the active data key version (else RVI02,
--      with the active version as DETAIL: the batch is prepared again);
--   4. with p_seen_epoch (lookups made ahead, see above): the epoch must be the one seen, or one
--      more, moved by this same import under this same lease holder (else RVI03).
-- Returns the epoch. Security invoker: row-level security keeps every read to the caller's tenant.
CREATE FUNCTION begin_contact_import_batch(p_import uuid, p_owner text, p_wrap_version integer, p_seen_epoch bigint) RETURNS bigint
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  DECLARE
    v_active integer;
    v_epoch bigint;
    v_last uuid;
    v_last_owner text;
  BEGIN
    PERFORM 1 FROM contact_imports WHERE id = p_import AND lease_owner = p_owner AND state = 'running' FOR UPDATE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'the import''s lease is not held' USING ERRCODE = 'RVI01';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('ringvakt:contact-import:' || current_tenant_id()::text, 0));
    SELECT version INTO v_active FROM tenant_keys WHERE purpose = 'data' AND state = 'active';
    IF p_wrap_version IS NOT NULL AND p_wrap_version < coalesce(v_active, 0) THEN
      RAISE EXCEPTION 'the batch''s subject keys are wrapped under a retired data key' USING ERRCODE = 'RVI02', DETAIL = v_active::text;
    END IF;
    -- Under the import lock, nothing moves it until this transaction ends.
    SELECT epoch, import_id, lease_owner INTO v_epoch, v_last, v_last_owner FROM contact_import_epochs WHERE tenant_id = current_tenant_id();
    v_epoch := coalesce(v_epoch, 0);
    IF p_seen_epoch IS NOT NULL AND v_epoch <> p_seen_epoch
       AND NOT (v_epoch = p_seen_epoch + 1 AND v_last = p_import AND v_last_owner = p_owner) THEN
      RAISE EXCEPTION 'another import committed since the batch''s lookups' USING ERRCODE = 'RVI03';
    END IF;
    RETURN v_epoch;
  END
  $$;
REVOKE ALL ON FUNCTION begin_contact_import_batch(uuid, text, integer, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION begin_contact_import_batch(uuid, text, integer, bigint) TO {{runtime_role}};
