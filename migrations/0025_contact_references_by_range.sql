-- The statement-level check that new phones and list memberships name existing contacts (0022)
-- reads a batch's new contacts with one range scan instead of one primary-key probe each.
--
-- An import batch creates 2,000 contacts, then their phones and their list memberships. Contact
-- ids are UUIDv7: the batch's contacts sit next to each other at the right edge of the tenant's
-- primary key, and so every id one statement names lies between its smallest and largest id.
-- Reading that range once, in key order, and finding the ids named among its rows replaces 2,000
-- descents of the index per statement; the probes (and their share of PostgreSQL's work in an
-- import, about 12 % of the importing backend's samples by perf) were most of what the check cost.
--
-- The range is read up to twice as many rows as ids named, plus 64 (a batch's contacts without a
-- phone lie between those with one). When every id named is among the rows read, every one exists;
-- otherwise (other writers' contacts in between, a contact named that does not exist, an API call
-- naming contacts spread over years, several tenants at once) the check falls back to the probes
-- of 0022, unchanged. Contacts this transaction did not create are locked FOR KEY SHARE on both
-- paths, as before.
CREATE OR REPLACE FUNCTION contact_children_reference_contacts() RETURNS trigger
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  DECLARE
    this_transaction xid := pg_current_xact_id()::xid;
    started timestamptz := now();
    named_tenants uuid[];
    named_ids uuid[];
    in_range uuid[];
    not_ours uuid[];
    wanted bigint;
    found bigint;
    other_tenants uuid[];
    other_ids uuid[];
    locked bigint;
  BEGIN
    -- 1. One tenant (always, through the runtime role's policy): the stretch of its primary key
    --    between the smallest and the largest id named, read in key order up to twice as many rows
    --    as ids named (and some: contacts without phones lie between those with), holds every one.
    SELECT array_agg(DISTINCT tenant_id) INTO named_tenants FROM new_rows;
    IF cardinality(named_tenants) = 1 THEN
      SELECT array_agg(DISTINCT contact_id ORDER BY contact_id) INTO named_ids FROM new_rows;
      SELECT array_agg(c.id), array_agg(c.id) FILTER (WHERE NOT c.ours)
        INTO in_range, not_ours
        FROM (SELECT c.id, (c.xmin = this_transaction AND c.created_at = started) AS ours
                FROM contacts c
               WHERE c.tenant_id = named_tenants[1] AND c.id >= named_ids[1] AND c.id <= named_ids[cardinality(named_ids)]
               ORDER BY c.id
               LIMIT 2 * cardinality(named_ids) + 64) AS c;
      SELECT count(*) INTO found FROM (SELECT unnest(named_ids) INTERSECT SELECT unnest(in_range)) AS named_and_read;
      IF found = cardinality(named_ids) THEN
        -- Every one exists; those this transaction did not create are held in step 3.
        other_ids := ARRAY(SELECT unnest(named_ids) INTERSECT SELECT unnest(not_ours));
        other_tenants := array_fill(named_tenants[1], ARRAY[cardinality(other_ids)]);
      END IF;
    END IF;

    -- 2. Otherwise each contact named is looked up by its key (0022): every one exists; those
    --    this transaction did not create are noted.
    IF other_ids IS NULL THEN
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
    END IF;

    -- 3. Those are held until this transaction ends; one deleted since it was read is not found
    --    again.
    IF cardinality(other_ids) > 0 THEN
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
