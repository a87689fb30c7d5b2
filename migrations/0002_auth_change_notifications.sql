-- Tell every Ringvakt process when a credential may have lost its power, so cached
-- authentication results are dropped at once: a token revoked, expired early or deleted, a user
-- disabled, deleted or given another role, a tenant suspended. The payload is the tenant id only (no personal data);
-- PostgreSQL delivers it at commit, and folds duplicates within one transaction.

CREATE FUNCTION notify_auth_change() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM pg_notify('ringvakt_auth', OLD.tenant_id::text);
  RETURN NULL;
END
$$;

CREATE TRIGGER api_tokens_auth_change
  AFTER UPDATE OR DELETE ON api_tokens
  FOR EACH ROW EXECUTE FUNCTION notify_auth_change();

CREATE TRIGGER users_auth_change
  AFTER UPDATE OF status, role OR DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION notify_auth_change();

CREATE FUNCTION notify_tenant_change() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM pg_notify('ringvakt_auth', OLD.id::text);
  RETURN NULL;
END
$$;

CREATE TRIGGER tenants_auth_change
  AFTER UPDATE OF status OR DELETE ON tenants
  FOR EACH ROW EXECUTE FUNCTION notify_tenant_change();
