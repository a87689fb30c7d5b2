-- The import worker refreshes the planner's statistics of the contact tables as they grow
-- (0010, refresh_contact_statistics). It needs them for its own lookups only: contacts by external
-- id and by e-mail blind index, phones by number blind index, list members by list and contact.
-- ANALYZE of a whole table also sorts a sample of every ciphertext column, which no plan uses; at
-- 1,000,000 contacts that was most of the half second each refresh took, time in which the batch
-- it ran beside waited. Autovacuum still analyses every column, as before.
--
-- SKIP_LOCKED, as for suppressions (0021): a VACUUM or another import's refresh holding the lock
-- means the statistics are being refreshed anyway; the import does not wait for them.
CREATE OR REPLACE FUNCTION refresh_contact_statistics() RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    ANALYZE (SKIP_LOCKED) contacts (tenant_id, id, external_id, email_index, import_id);
    ANALYZE (SKIP_LOCKED) contact_phones (tenant_id, contact_id, number_index);
    ANALYZE (SKIP_LOCKED) contact_list_members (tenant_id, list_id, contact_id);
  END
  $$;
REVOKE ALL ON FUNCTION refresh_contact_statistics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refresh_contact_statistics() TO {{runtime_role}};
