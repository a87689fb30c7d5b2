-- Contacts reference their tenant, checked once per statement instead of once per row (as 0022
-- did for phones and list members). An import batch inserts 2,000 contacts of one tenant in one
-- statement; the foreign key checked the same tenant row 2,000 times (planned query, index probe,
-- row lock each): about 7 % of PostgreSQL's work in an import, measured with perf on
-- `npm run bench -- contacts-import`, on the path every batch waits for.
--
-- The same guarantees as the foreign key (NO ACTION), per statement:
-- * the tenant of every new contact exists and is locked FOR KEY SHARE until the transaction
--   ends, so a concurrent delete of the tenant waits;
-- * a tenant with contacts is not deleted, nor truncated on its own;
-- * a tenant's id does not change (contacts' key columns are fixed already, 0022).
-- The check runs as the owner (SECURITY DEFINER), as a foreign key's does: the runtime role sees
-- its own tenant only and may not lock it; the owner sees every tenant (owner_maintenance).
--
-- Where this differs from the foreign key: deleting tenants is refused outside READ COMMITTED
-- (a statement cannot see contacts committed after a REPEATABLE READ snapshot; the product never
-- deletes a tenant); with triggers off (session_replication_role = replica, a restore) nothing
-- is checked — as with foreign keys; and the tables' owner may disable these triggers
-- (ALTER TABLE … DISABLE TRIGGER), where a foreign key's internal triggers need a superuser.
ALTER TABLE contacts DROP CONSTRAINT contacts_tenant_id_fkey;

CREATE FUNCTION contacts_reference_tenants() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
  DECLARE
    wanted bigint;
    locked bigint;
  BEGIN
    SELECT count(*) INTO wanted FROM (SELECT DISTINCT tenant_id FROM new_rows) AS named;
    SELECT count(*) INTO locked
      FROM (SELECT DISTINCT tenant_id FROM new_rows) AS named,
           LATERAL (SELECT 1 FROM tenants t WHERE t.id = named.tenant_id FOR KEY SHARE OF t) AS parents;
    IF locked <> wanted THEN
      RAISE EXCEPTION 'a contact refers to a tenant that does not exist'
        USING ERRCODE = 'foreign_key_violation', TABLE = 'contacts';
    END IF;
    RETURN NULL;
  END
  $$;
REVOKE ALL ON FUNCTION contacts_reference_tenants() FROM PUBLIC;
CREATE TRIGGER contacts_reference_tenants
  AFTER INSERT ON contacts REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION contacts_reference_tenants();

-- Contacts are under forced row-level security, which the owner is subject to as well: the check
-- looks at each deleted tenant's contacts as that tenant (app.tenant_id, set for the transaction
-- by set_config and put back to the caller's value right after each look).
CREATE FUNCTION tenants_refuse_delete_with_contacts() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
  DECLARE
    caller_tenant text := current_setting('app.tenant_id', true);
    deleted uuid;
    has_contacts boolean;
  BEGIN
    IF NOT EXISTS (SELECT 1 FROM old_rows) THEN
      RETURN NULL;
    END IF;
    PERFORM refuse_cascade_outside_read_committed('tenants');
    FOR deleted IN SELECT id FROM old_rows LOOP
      PERFORM set_config('app.tenant_id', deleted::text, true);
      SELECT EXISTS (SELECT 1 FROM contacts WHERE tenant_id = deleted) INTO has_contacts;
      PERFORM set_config('app.tenant_id', coalesce(caller_tenant, ''), true);
      IF has_contacts THEN
        RAISE EXCEPTION 'a tenant with contacts is not deleted'
          USING ERRCODE = 'foreign_key_violation', TABLE = 'tenants';
      END IF;
    END LOOP;
    RETURN NULL;
  END
  $$;
REVOKE ALL ON FUNCTION tenants_refuse_delete_with_contacts() FROM PUBLIC;
CREATE TRIGGER tenants_refuse_delete_with_contacts
  AFTER DELETE ON tenants REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION tenants_refuse_delete_with_contacts();

-- As with a foreign key, tenants are truncated only together with contacts (TRUNCATE tenants,
-- contacts, …): this runs once every table of the statement is emptied, and contacts' storage is
-- then empty. (Row-level security hides other tenants' rows from a query; the storage size does
-- not. Contacts whose rows were all deleted but not vacuumed away count as contacts.)
CREATE FUNCTION tenants_refuse_truncate_with_contacts() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    IF pg_relation_size('contacts') > 0 THEN
      RAISE EXCEPTION 'tenants are not truncated while contacts exist'
        USING ERRCODE = 'foreign_key_violation', TABLE = 'tenants';
    END IF;
    RETURN NULL;
  END
  $$;
REVOKE ALL ON FUNCTION tenants_refuse_truncate_with_contacts() FROM PUBLIC;
CREATE TRIGGER tenants_refuse_truncate_with_contacts AFTER TRUNCATE ON tenants
  FOR EACH STATEMENT EXECUTE FUNCTION tenants_refuse_truncate_with_contacts();

CREATE TRIGGER tenants_id_fixed BEFORE UPDATE OF id ON tenants
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
  EXECUTE FUNCTION refuse_key_change();
