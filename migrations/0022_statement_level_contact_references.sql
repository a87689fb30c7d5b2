-- Contact phones and list memberships reference their contact and their list, checked once per
-- statement instead of once per row.
--
-- A foreign key checks each inserted row on its own: one planned query, one index probe and one
-- row lock per row and per key. An import batch of 2,000 contacts writes their phones and their
-- list memberships in two or three statements (phones; new members; members linked from earlier
-- imports), and three such keys cost 6,000 separate checks a batch. Measured with
-- `npm run bench -- contacts-import` (100,000 rows), dropping the per-row checks took PostgreSQL's
-- CPU from about 71 to 45 µs per imported row, the largest single part of its work.
--
-- The same guarantees, per statement, with transition tables:
-- * a child row names a contact (a list) that exists, and that contact (list) is locked FOR KEY
--   SHARE until the transaction ends, as a foreign key locks it, so a concurrent delete waits;
-- * deleting a contact or a list deletes its phones and memberships (ON DELETE CASCADE before);
-- * the key columns of children and parents do not change (nothing in the product changes them;
--   a foreign key would have had to follow such a change);
-- * TRUNCATE of a parent takes its children with it.
-- The checks run as the caller (no SECURITY DEFINER): a child's tenant is the caller's (row-level
-- security's WITH CHECK), and the parents it may name are exactly the caller's tenant's.
--
-- Where this differs from a foreign key:
-- * A foreign key's cascade detects, in a REPEATABLE READ or SERIALIZABLE transaction, children
--   that a concurrent transaction committed after the deleting transaction's snapshot (and fails
--   it). A statement cannot see those rows, so deleting contacts or lists is refused outside
--   READ COMMITTED. The product deletes neither (erasure keeps the row and destroys its key);
--   this guards a manual delete.
-- * A foreign key's cascade runs as the table owner and ignores row-level security; these run as
--   the caller and reach the children the caller sees. That is every child of every parent the
--   caller can delete as long as the four tables share their one policy (tenant_isolation), which
--   test/contact-references.int.test.ts holds them to: a policy that let a role see a tenant's
--   contacts but not their phones would leave orphans behind.
-- * The caller needs the privileges the statements need: UPDATE on a parent to lock it (the
--   runtime role has it), DELETE or TRUNCATE on the children to cascade.
-- * With triggers off (session_replication_role = replica, as a restore loads), nothing is checked
--   or cascaded — as with foreign keys — and TRUNCATE … CASCADE no longer reaches the children;
--   both restore paths truncate every table in one statement.
ALTER TABLE contact_phones DROP CONSTRAINT contact_phones_tenant_id_contact_id_fkey;
ALTER TABLE contact_list_members DROP CONSTRAINT contact_list_members_tenant_id_list_id_fkey;
ALTER TABLE contact_list_members DROP CONSTRAINT contact_list_members_tenant_id_contact_id_fkey;

-- Children: every (tenant, contact) and (tenant, list) that the statement's new rows name must
-- exist, and is held against deletion until the transaction ends. Each distinct parent is looked
-- up by its primary key (a LATERAL subquery that cannot be flattened: one with a row lock, or
-- OFFSET 0), whatever the planner believes of the table's size: a semi-join the other way round
-- would read every contact of the tenant for every statement.
--
-- A contact that this transaction created is invisible to every other transaction until it
-- commits, so nothing else can delete it meanwhile: it needs no lock (an import's new contacts,
-- thousands a batch: a row lock writes WAL and dirties the page again). "Created by this
-- transaction" is its xmin being this transaction's id and its created_at being this
-- transaction's start; the second half keeps an old frozen row whose raw xmin happens to equal a
-- new id after wraparound from being taken for ours. Every other contact (one linked from an
-- earlier import, one named by the API) is then locked FOR KEY SHARE, as a foreign key locks it:
-- a concurrent delete waits for this transaction, and one that committed between the two passes
-- is not found again, which fails the statement.
CREATE FUNCTION contact_children_reference_contacts() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  DECLARE
    this_transaction xid := pg_current_xact_id()::xid;
    started timestamptz := now();
    wanted bigint;
    found bigint;
    other_tenants uuid[];
    other_ids uuid[];
    locked bigint;
  BEGIN
    -- 1. Every contact named exists; note those this transaction did not create.
    SELECT count(*), count(c.id),
           array_agg(c.tenant_id) FILTER (WHERE NOT c.ours), array_agg(c.id) FILTER (WHERE NOT c.ours)
      INTO wanted, found, other_tenants, other_ids
      FROM (SELECT DISTINCT tenant_id, contact_id FROM new_rows) AS named
      LEFT JOIN LATERAL (SELECT c.tenant_id, c.id, (c.xmin = this_transaction AND c.created_at = started) AS ours
                           FROM contacts c
                          WHERE c.tenant_id = named.tenant_id AND c.id = named.contact_id
                         OFFSET 0) AS c ON true;
    IF found <> wanted THEN
      RAISE EXCEPTION 'a row of % refers to a contact that does not exist', TG_TABLE_NAME
        USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
    END IF;
    -- 2. Those are held until this transaction ends; one deleted since step 1 is not found again.
    IF other_ids IS NOT NULL THEN
      SELECT count(*) INTO locked
        FROM unnest(other_tenants, other_ids) AS named(tenant_id, id),
             LATERAL (SELECT 1 FROM contacts c
                       WHERE c.tenant_id = named.tenant_id AND c.id = named.id
                         FOR KEY SHARE OF c) AS held;
      IF locked <> cardinality(other_ids) THEN
        RAISE EXCEPTION 'a row of % refers to a contact that does not exist', TG_TABLE_NAME
          USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
      END IF;
    END IF;
    RETURN NULL;
  END
  $$;

CREATE FUNCTION contact_list_members_reference_lists() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  DECLARE
    wanted bigint;
    locked bigint;
  BEGIN
    SELECT count(*) INTO wanted FROM (SELECT DISTINCT tenant_id, list_id FROM new_rows) AS named;
    SELECT count(*) INTO locked
      FROM (SELECT DISTINCT tenant_id, list_id FROM new_rows) AS named,
           LATERAL (SELECT 1 FROM contact_lists l
                     WHERE l.tenant_id = named.tenant_id AND l.id = named.list_id
                       FOR KEY SHARE OF l) AS parents;
    IF locked <> wanted THEN
      RAISE EXCEPTION 'a list membership refers to a list that does not exist'
        USING ERRCODE = 'foreign_key_violation', TABLE = 'contact_list_members';
    END IF;
    RETURN NULL;
  END
  $$;

CREATE TRIGGER contact_phones_reference_contacts
  AFTER INSERT ON contact_phones REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION contact_children_reference_contacts();
CREATE TRIGGER contact_list_members_reference_contacts
  AFTER INSERT ON contact_list_members REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION contact_children_reference_contacts();
CREATE TRIGGER contact_list_members_reference_lists
  AFTER INSERT ON contact_list_members REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION contact_list_members_reference_lists();

-- Key columns stay as inserted, on both sides.
CREATE FUNCTION refuse_key_change() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    RAISE EXCEPTION 'the key columns of % are not changed', TG_TABLE_NAME
      USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
  END
  $$;
CREATE TRIGGER contact_phones_keys_fixed BEFORE UPDATE OF tenant_id, contact_id ON contact_phones
  FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.contact_id IS DISTINCT FROM NEW.contact_id)
  EXECUTE FUNCTION refuse_key_change();
CREATE TRIGGER contact_list_members_keys_fixed BEFORE UPDATE OF tenant_id, list_id, contact_id ON contact_list_members
  FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.list_id IS DISTINCT FROM NEW.list_id OR OLD.contact_id IS DISTINCT FROM NEW.contact_id)
  EXECUTE FUNCTION refuse_key_change();
CREATE TRIGGER contacts_keys_fixed BEFORE UPDATE OF tenant_id, id ON contacts
  FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.id IS DISTINCT FROM NEW.id)
  EXECUTE FUNCTION refuse_key_change();
CREATE TRIGGER contact_lists_keys_fixed BEFORE UPDATE OF tenant_id, id ON contact_lists
  FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.id IS DISTINCT FROM NEW.id)
  EXECUTE FUNCTION refuse_key_change();

-- Parents: a delete takes the children with it, once per statement, and only where the statement
-- that deletes them sees every child (READ COMMITTED: see the head of this file). A delete that
-- removed nothing cascades nothing and is let through in any isolation.
CREATE FUNCTION refuse_cascade_outside_read_committed(parents text) RETURNS void
  LANGUAGE plpgsql
  AS $$
  BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
      RAISE EXCEPTION '% are deleted in READ COMMITTED transactions only', parents
        USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
  END
  $$;
CREATE FUNCTION contacts_delete_children() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    IF NOT EXISTS (SELECT 1 FROM old_rows) THEN
      RETURN NULL;
    END IF;
    PERFORM refuse_cascade_outside_read_committed('contacts');
    DELETE FROM contact_phones p USING old_rows o WHERE p.tenant_id = o.tenant_id AND p.contact_id = o.id;
    DELETE FROM contact_list_members m USING old_rows o WHERE m.tenant_id = o.tenant_id AND m.contact_id = o.id;
    RETURN NULL;
  END
  $$;
CREATE FUNCTION contact_lists_delete_members() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    IF NOT EXISTS (SELECT 1 FROM old_rows) THEN
      RETURN NULL;
    END IF;
    PERFORM refuse_cascade_outside_read_committed('contact lists');
    DELETE FROM contact_list_members m USING old_rows o WHERE m.tenant_id = o.tenant_id AND m.list_id = o.id;
    RETURN NULL;
  END
  $$;
CREATE TRIGGER contacts_delete_children
  AFTER DELETE ON contacts REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION contacts_delete_children();
CREATE TRIGGER contact_lists_delete_members
  AFTER DELETE ON contact_lists REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION contact_lists_delete_members();

CREATE FUNCTION contacts_truncate_children() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    TRUNCATE contact_phones, contact_list_members;
    RETURN NULL;
  END
  $$;
CREATE FUNCTION contact_lists_truncate_members() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    TRUNCATE contact_list_members;
    RETURN NULL;
  END
  $$;
CREATE TRIGGER contacts_truncate_children AFTER TRUNCATE ON contacts
  FOR EACH STATEMENT EXECUTE FUNCTION contacts_truncate_children();
CREATE TRIGGER contact_lists_truncate_members AFTER TRUNCATE ON contact_lists
  FOR EACH STATEMENT EXECUTE FUNCTION contact_lists_truncate_members();
