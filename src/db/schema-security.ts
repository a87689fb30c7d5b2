import type { ColumnType } from './kysely.ts';
import type { TenantColumn, Timestamp, Uuid } from './schema.ts';

/** The security monitoring tables (migration 0016): rule settings, alerts, the detector's cursor, webhooks and deliveries. */

export type Severity = 'low' | 'medium' | 'high' | 'critical';
export type AlertState = 'open' | 'acknowledged' | 'resolved';

export type DetectionRuleSettingsTable = {
  tenant_id: TenantColumn;
  rule_id: string;
  enabled: boolean;
  threshold: number;
  window_seconds: number;
  severity: Severity;
  updated_by: string;
  updated_at: Timestamp;
};

export type SecurityAlertsTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  rule_id: string;
  severity: Severity;
  subject: string;
  summary: string;
  state: ColumnType<AlertState, AlertState | undefined, AlertState>;
  hits: ColumnType<number, number | undefined, number>;
  first_seen: Date;
  last_seen: Date;
  raised_at: Timestamp;
  /** Audit event ids (bigint: read as text). */
  evidence: ColumnType<string[], string[] | undefined, string[]>;
  acknowledged_by: string | null;
  acknowledged_at: Date | null;
  resolved_at: Date | null;
};

export type DetectionCursorsTable = {
  tenant_id: TenantColumn;
  last_leaf: ColumnType<string, number, number>;
  ledger_checked_at: Date | null;
  updated_at: Timestamp;
};

export type AlertWebhooksTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  url: string;
  secret_ciphertext: Buffer;
  min_severity: ColumnType<Severity, Severity | undefined, Severity>;
  enabled: ColumnType<boolean, boolean | undefined, boolean>;
  created_by: string;
  created_at: Timestamp;
};

export type AlertDeliveriesTable = {
  tenant_id: TenantColumn;
  id: Uuid;
  alert_id: string;
  webhook_id: string;
  hits: number;
  state: ColumnType<'pending' | 'delivered' | 'failed', 'pending' | undefined, 'pending' | 'delivered' | 'failed'>;
  attempts: ColumnType<number, number | undefined, number>;
  next_at: Timestamp;
  last_status: number | null;
  last_error: string | null;
  created_at: Timestamp;
  delivered_at: Date | null;
};

export type SecurityTables = {
  detection_rule_settings: DetectionRuleSettingsTable;
  security_alerts: SecurityAlertsTable;
  detection_cursors: DetectionCursorsTable;
  alert_webhooks: AlertWebhooksTable;
  alert_deliveries: AlertDeliveriesTable;
};
