-- The audit ledger's append path, made cheaper without weakening a control. Every audited change
-- inserts one row into audit_events, so each index and trigger on it is paid on every change.
--
-- 1. Unsealed events carry no leaf_index, and a NULL never conflicts in a UNIQUE constraint: the
--    constraint's index held one useless entry per unsealed event. A partial unique index over the
--    sealed rows enforces exactly the same rule, and the sealer's UPDATE adds the entry when it
--    gives the event its place. Every query on leaf_index either compares it (which implies
--    NOT NULL) or takes its max/min (which PostgreSQL plans as "IS NOT NULL … LIMIT 1"), so the
--    verifier, the proofs and retention keep their index.
-- 2. The guard that events arrive unsealed now runs its function only for a row that breaks the
--    rule (a WHEN condition evaluated in the executor), instead of entering PL/pgSQL for every
--    row. A row inserted with a leaf_index is still refused, for every role, the owner included.
--
-- The index is built inside the migration's transaction, holding the table: on a ledger of
-- millions of events, audited changes wait for the build (seconds) once, during the upgrade.

ALTER TABLE audit_events DROP CONSTRAINT audit_events_tenant_id_leaf_index_key;
CREATE UNIQUE INDEX audit_events_sealed_leaf ON audit_events (tenant_id, leaf_index) WHERE leaf_index IS NOT NULL;

DROP TRIGGER audit_events_arrive_unsealed ON audit_events;
CREATE TRIGGER audit_events_arrive_unsealed BEFORE INSERT ON audit_events
  FOR EACH ROW WHEN (NEW.leaf_index IS NOT NULL) EXECUTE FUNCTION audit_events_arrive_unsealed();
