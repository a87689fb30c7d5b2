-- A registry file replaces up to millions of suppressions in one transaction, and the next import
-- checks every number of every batch against them at once (value_index = ANY(…)). Until autovacuum
-- next analyses the table (a minute or more), the planner has no statistics for it and judges the
-- value_index condition unselective: it reads every suppression of the tenant and filters, about
-- 40 ms per batch of 2,000 rows at 100,000 entries, where the index answers in a few. Replacing a
-- registry now refreshes the statistics in its own transaction (ANALYZE counts the transaction's
-- own new rows as live). The runtime role cannot ANALYZE a table it does not own, hence a function
-- that runs as the owner and does that one thing.
--
-- SKIP_LOCKED: ANALYZE takes a SHARE UPDATE EXCLUSIVE lock, which a running VACUUM (or another
-- tenant's registry load, until it commits) holds too. Waiting for it could run a load into the
-- statement timeout and lose it, or keep cancelling autovacuum; the refresh is an optimisation, so
-- when the table is busy it is skipped and autovacuum catches up as before.
CREATE FUNCTION refresh_suppression_statistics() RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    ANALYZE (SKIP_LOCKED) suppressions;
  END
  $$;
REVOKE ALL ON FUNCTION refresh_suppression_statistics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refresh_suppression_statistics() TO {{runtime_role}};
