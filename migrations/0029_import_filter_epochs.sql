-- An import keeps, in its own memory, a filter of the blind indexes that exist in its tenant
-- (src/modules/imports/index-filter.ts): a lookup is made only for an index the filter holds.
-- Its contacts' part is loaded with the tenant's import epoch (0026) and is sound only while every
-- move of the epoch since then was this import's own batch. Two things make that checkable here:
--
--   1. Every write that adds a contact identity moves the epoch, not only an import's batch: a
--      contact created through the API, a number, e-mail or external id edited, a blind index
--      rewritten. Such a write moves it as no import (the nil import id), so it breaks any import's
--      run. A write that only clears or keeps them (an erasure, an edit of a note) does not: it
--      cannot hide a person from an import's dedupe.
--   2. The epoch row keeps where the last mover's run began (run_start): the epoch before the
--      first of the consecutive moves by the same import under the same lease holder. A batch whose
--      lookups used a filter loaded at epoch F commits only if the epoch is still F, or if its own
--      import (same lease holder) made every move since F (run_start <= F); otherwise it is refused
--      (RVI03) and its lookups are made again under the lock, without the filter.
--
-- A batch now also locks the epoch row (creating it, at epoch 0, for a tenant that has none yet),
-- so that a contact write (which moves the epoch at its statement's end) either committed before
-- the batch began — and the batch sees it — or commits after the batch.
--
-- Its suppressions' part (the do-not-call entries' blind indexes) is loaded with the tenant's
-- suppression epoch, which every new entry moves (3, below); lookups that used it are refused
-- (RVI03) once it moved.
--
-- Two transaction-local marks keep writes from moving an epoch: ringvakt.contact_import_batch
-- (set by begin_contact_import_batch: the batch moves it once, through its cursor) and
-- ringvakt.suppression_epoch_at_end (set by a registry's replacement, which moves it last). Code
-- that set either anywhere else would hide its writes from imports' filters.

-- Epoch 0: the row a batch creates for a tenant that nothing has moved yet.
ALTER TABLE contact_import_epochs
  ADD COLUMN run_start bigint NOT NULL DEFAULT 0 CHECK (run_start >= 0),
  DROP CONSTRAINT contact_import_epochs_epoch_check,
  ADD CONSTRAINT contact_import_epochs_epoch_check CHECK (epoch >= 0);
-- The epoch only moves forward: a row deleted would start it again at values already seen.
REVOKE DELETE, TRUNCATE ON contact_import_epochs FROM {{runtime_role}};

-- As in 0026, with run_start kept while the same import and lease holder move the epoch.
CREATE OR REPLACE FUNCTION contact_import_epoch_moves() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    INSERT INTO contact_import_epochs (tenant_id, epoch, import_id, lease_owner, run_start) VALUES (NEW.tenant_id, 1, NEW.id, coalesce(NEW.lease_owner, ''), 0)
      ON CONFLICT (tenant_id) DO UPDATE SET epoch = contact_import_epochs.epoch + 1, import_id = EXCLUDED.import_id, lease_owner = EXCLUDED.lease_owner,
        run_start = CASE WHEN contact_import_epochs.import_id = EXCLUDED.import_id AND contact_import_epochs.lease_owner = EXCLUDED.lease_owner
                         THEN contact_import_epochs.run_start ELSE contact_import_epochs.epoch END;
    RETURN NULL;
  END
  $$;

-- A write of contacts' identities outside an import batch moves the tenant's epoch as no import.
-- Per statement, not per row: an import batch's statements pay one call each, and return at once
-- (begin_contact_import_batch marks its transaction). A write without a tenant (the owner role's
-- maintenance) has no tenant's epoch to move; row-level security keeps the runtime role's writes
-- to the transaction's tenant.
CREATE FUNCTION move_contact_write_epoch() RETURNS void
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    IF current_tenant_id() IS NULL OR current_setting('ringvakt.contact_import_batch', true) = 'on' THEN
      RETURN;
    END IF;
    INSERT INTO contact_import_epochs (tenant_id, epoch, import_id, lease_owner, run_start)
      VALUES (current_tenant_id(), 1, '00000000-0000-0000-0000-000000000000', '', 0)
      ON CONFLICT (tenant_id) DO UPDATE SET epoch = contact_import_epochs.epoch + 1, import_id = EXCLUDED.import_id, lease_owner = EXCLUDED.lease_owner,
        run_start = contact_import_epochs.epoch;
  END
  $$;
REVOKE ALL ON FUNCTION move_contact_write_epoch() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION move_contact_write_epoch() TO {{runtime_role}};

-- New rows: a new contact, or a number added.
CREATE FUNCTION contact_inserts_move_epoch() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    PERFORM move_contact_write_epoch();
    RETURN NULL;
  END
  $$;
CREATE TRIGGER contacts_insert_moves_import_epoch AFTER INSERT ON contacts
  FOR EACH STATEMENT EXECUTE FUNCTION contact_inserts_move_epoch();
CREATE TRIGGER contact_phones_insert_moves_import_epoch AFTER INSERT ON contact_phones
  FOR EACH STATEMENT EXECUTE FUNCTION contact_inserts_move_epoch();

-- Changed rows move it only when an identity was set to a value it did not have (an import never
-- updates these tables, so their transition tables are never kept for one).
CREATE FUNCTION contact_updates_move_epoch() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    IF EXISTS (SELECT 1 FROM changed_new n JOIN changed_old o ON o.tenant_id = n.tenant_id AND o.id = n.id
                WHERE (n.email_index IS NOT NULL AND n.email_index IS DISTINCT FROM o.email_index)
                   OR (n.external_id IS NOT NULL AND n.external_id IS DISTINCT FROM o.external_id)) THEN
      PERFORM move_contact_write_epoch();
    END IF;
    RETURN NULL;
  END
  $$;
CREATE TRIGGER contacts_update_moves_import_epoch AFTER UPDATE ON contacts
  REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
  FOR EACH STATEMENT EXECUTE FUNCTION contact_updates_move_epoch();

CREATE FUNCTION contact_phone_updates_move_epoch() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    IF EXISTS (SELECT 1 FROM changed_new n JOIN changed_old o ON o.tenant_id = n.tenant_id AND o.contact_id = n.contact_id AND o.position = n.position
                WHERE n.number_index IS DISTINCT FROM o.number_index) THEN
      PERFORM move_contact_write_epoch();
    END IF;
    RETURN NULL;
  END
  $$;
CREATE TRIGGER contact_phones_update_moves_import_epoch AFTER UPDATE ON contact_phones
  REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
  FOR EACH STATEMENT EXECUTE FUNCTION contact_phone_updates_move_epoch();

-- As in 0026, and: the epoch row locked; the transaction marked as an import batch's (its own
-- writes move the epoch once, through the import's cursor); with p_filter_epoch (the lookups
-- used a filter loaded at that epoch), every move since it must be this import's under this lease
-- holder (else RVI03); with p_filter_suppressions, the suppression epoch must still be that one.
CREATE FUNCTION begin_contact_import_batch(p_import uuid, p_owner text, p_wrap_version integer, p_seen_epoch bigint, p_filter_epoch bigint, p_filter_suppressions bigint)
  RETURNS bigint
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  DECLARE
    v_active integer;
    v_epoch bigint;
    v_last uuid;
    v_last_owner text;
    v_run_start bigint;
  BEGIN
    PERFORM 1 FROM contact_imports WHERE id = p_import AND lease_owner = p_owner AND state = 'running' FOR UPDATE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'the import''s lease is not held' USING ERRCODE = 'RVI01';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('ringvakt:contact-import:' || current_tenant_id()::text, 0));
    PERFORM set_config('ringvakt.contact_import_batch', 'on', true);
    SELECT version INTO v_active FROM tenant_keys WHERE purpose = 'data' AND state = 'active';
    IF p_wrap_version IS NOT NULL AND p_wrap_version < coalesce(v_active, 0) THEN
      RAISE EXCEPTION 'the batch''s subject keys are wrapped under a retired data key' USING ERRCODE = 'RVI02', DETAIL = v_active::text;
    END IF;
    -- Locked: a contact write moves it only after this transaction ends. A tenant without the row
    -- gets it at epoch 0 (a write that created it meanwhile is waited for, and then seen).
    SELECT epoch, import_id, lease_owner, run_start INTO v_epoch, v_last, v_last_owner, v_run_start
      FROM contact_import_epochs WHERE tenant_id = current_tenant_id() FOR UPDATE;
    IF NOT FOUND THEN
      INSERT INTO contact_import_epochs (tenant_id, epoch, import_id, lease_owner, run_start)
        VALUES (current_tenant_id(), 0, '00000000-0000-0000-0000-000000000000', '', 0) ON CONFLICT (tenant_id) DO NOTHING;
      SELECT epoch, import_id, lease_owner, run_start INTO STRICT v_epoch, v_last, v_last_owner, v_run_start
        FROM contact_import_epochs WHERE tenant_id = current_tenant_id() FOR UPDATE;
    END IF;
    IF p_seen_epoch IS NOT NULL AND v_epoch <> p_seen_epoch
       AND NOT (v_epoch = p_seen_epoch + 1 AND v_last IS NOT DISTINCT FROM p_import AND v_last_owner IS NOT DISTINCT FROM p_owner) THEN
      RAISE EXCEPTION 'another import committed since the batch''s lookups' USING ERRCODE = 'RVI03';
    END IF;
    IF p_filter_epoch IS NOT NULL AND v_epoch <> p_filter_epoch
       AND NOT (v_last IS NOT DISTINCT FROM p_import AND v_last_owner IS NOT DISTINCT FROM p_owner AND v_run_start <= p_filter_epoch) THEN
      RAISE EXCEPTION 'contacts were written since the import''s filter was loaded' USING ERRCODE = 'RVI03';
    END IF;
    IF p_filter_suppressions IS NOT NULL AND coalesce((SELECT epoch FROM suppression_epochs WHERE tenant_id = current_tenant_id()), 0) <> p_filter_suppressions THEN
      RAISE EXCEPTION 'do-not-call entries were added since the import''s filter was loaded' USING ERRCODE = 'RVI03';
    END IF;
    RETURN v_epoch;
  END
  $$;
REVOKE ALL ON FUNCTION begin_contact_import_batch(uuid, text, integer, bigint, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION begin_contact_import_batch(uuid, text, integer, bigint, bigint, bigint) TO {{runtime_role}};

-- The four-argument form (a worker of an earlier version during a rolling upgrade) gets the lock
-- and the mark too.
CREATE OR REPLACE FUNCTION begin_contact_import_batch(p_import uuid, p_owner text, p_wrap_version integer, p_seen_epoch bigint) RETURNS bigint
  LANGUAGE sql SET search_path = ringvakt, pg_temp
  AS $$ SELECT begin_contact_import_batch(p_import, p_owner, p_wrap_version, p_seen_epoch, NULL, NULL) $$;

-- 3. The suppression epoch: moved by every statement that adds do-not-call entries or rewrites
--    their blind indexes. A registry's replacement (thousands of statements in one transaction)
--    marks its transaction and moves it once, as its last statement, so that the row is locked
--    only for the moment before its commit and an objection recorded meanwhile does not wait.
CREATE TABLE suppression_epochs (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id) ON DELETE CASCADE,
  epoch bigint NOT NULL CHECK (epoch > 0),
  PRIMARY KEY (tenant_id)
);
ALTER TABLE suppression_epochs ENABLE ROW LEVEL SECURITY;
ALTER TABLE suppression_epochs FORCE ROW LEVEL SECURITY;
-- The tenant read once per statement (as 0027 made every policy).
CREATE POLICY tenant_isolation ON suppression_epochs USING (tenant_id = (SELECT current_tenant_id())) WITH CHECK (tenant_id = (SELECT current_tenant_id()));

REVOKE DELETE, TRUNCATE ON suppression_epochs FROM {{runtime_role}};

CREATE FUNCTION move_suppression_epoch() RETURNS void
  LANGUAGE sql SET search_path = ringvakt, pg_temp
  AS $$ INSERT INTO suppression_epochs (tenant_id, epoch) VALUES (current_tenant_id(), 1)
          ON CONFLICT (tenant_id) DO UPDATE SET epoch = suppression_epochs.epoch + 1 $$;
REVOKE ALL ON FUNCTION move_suppression_epoch() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION move_suppression_epoch() TO {{runtime_role}};

CREATE FUNCTION suppression_writes_move_epoch() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    IF current_tenant_id() IS NULL OR current_setting('ringvakt.suppression_epoch_at_end', true) = 'on' THEN
      RETURN NULL;
    END IF;
    PERFORM move_suppression_epoch();
    RETURN NULL;
  END
  $$;
CREATE TRIGGER suppressions_move_epoch AFTER INSERT OR UPDATE OF value_index ON suppressions
  FOR EACH STATEMENT EXECUTE FUNCTION suppression_writes_move_epoch();
