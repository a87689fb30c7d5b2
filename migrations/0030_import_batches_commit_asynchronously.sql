-- An import batch commits without waiting for its WAL to reach the disk (synchronous_commit = off,
-- set by the batch itself; src/modules/imports/commit-batch.ts). A database crash can then lose
-- the last batches an import was told had committed: their rows, counts and cursor together, so the
-- import's state stays whole, but the worker's own view of it runs ahead. Two checks keep such a
-- worker from going on as if nothing happened:
--
--   1. The server's incarnation: a token kept in an unlogged table, which PostgreSQL empties on
--      every crash recovery, and which a standby promoted or a database restored to a point in time
--      does not have either. An import's run reads it when it loads its job (in the statement that
--      reads the import's cursor), before anything else it relies on; each batch, and the import's
--      end, checks it is still the same. A run that began before a crash is refused (RVI04) after
--      it, whatever it read: its cursor, the epochs its lookups and index filter rely on (0026,
--      0029; epochs moved by lost batches are handed out again after the crash). Workers of an
--      earlier version do not check it: the guarantee holds once every worker runs this one.
--   2. The cursor: each batch checks the import's rows_done is where the run left it (RVI04).
--
-- A refused run hands the import back; the next run resumes it from its cursor as the crash left
-- it. The import's end commits synchronously, which makes every batch before it durable too (the
-- WAL is flushed in order). (A contact lookup commits asynchronously too: it changes no data.)

-- Never backed up (src/backup: unlogged tables are left out): a restored database is a new one.
CREATE UNLOGGED TABLE server_incarnation (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  token uuid NOT NULL DEFAULT gen_random_uuid(),
  created_at timestamptz NOT NULL DEFAULT now()
);
-- Only the function below reads and creates it.
REVOKE ALL ON server_incarnation FROM {{runtime_role}};

-- The token of this incarnation, created by the first caller after a crash (two at once get the
-- same one: the second waits for the first's row, and reads it — in READ COMMITTED, as every
-- caller is).
CREATE FUNCTION server_incarnation() RETURNS uuid
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
  DECLARE
    v_token uuid;
  BEGIN
    SELECT token INTO v_token FROM server_incarnation;
    IF NOT FOUND THEN
      INSERT INTO server_incarnation DEFAULT VALUES ON CONFLICT (singleton) DO NOTHING;
      SELECT token INTO STRICT v_token FROM server_incarnation;
    END IF;
    RETURN v_token;
  END
  $$;
REVOKE ALL ON FUNCTION server_incarnation() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION server_incarnation() TO {{runtime_role}};

-- A batch (or the end) of an import's run goes on only in the incarnation the run began in, with
-- the import's cursor where the run left it.
CREATE FUNCTION continue_contact_import_run(p_import uuid, p_rows_done bigint, p_incarnation uuid) RETURNS void
  LANGUAGE plpgsql SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    IF server_incarnation() IS DISTINCT FROM p_incarnation THEN
      RAISE EXCEPTION 'the database server restarted since the import''s run began' USING ERRCODE = 'RVI04';
    END IF;
    PERFORM 1 FROM contact_imports WHERE id = p_import AND rows_done = p_rows_done;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'the import''s cursor is not where its run left it' USING ERRCODE = 'RVI04';
    END IF;
  END
  $$;
REVOKE ALL ON FUNCTION continue_contact_import_run(uuid, bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION continue_contact_import_run(uuid, bigint, uuid) TO {{runtime_role}};
