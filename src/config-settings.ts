/**
 * Every setting of Ringvakt: its environment variable, its key in the JSON file named by
 * RINGVAKT_CONFIG, whether it is a secret (never echoed), and what it expects — the words of the
 * error when a value is wrong. Validation and defaults are in config.ts.
 */

export type SettingSpec = {
  env: string;
  key: string;
  secret?: boolean;
  describe: string;
};

export const settings = {
  dataDir: { env: 'RINGVAKT_DATA_DIR', key: 'dataDir', describe: 'a folder path' },
  databaseUrl: {
    env: 'DATABASE_URL',
    key: 'databaseUrl',
    secret: true,
    describe: 'a postgres:// URL of a role that may run migrations',
  },
  databaseAppUrl: {
    env: 'DATABASE_APP_URL',
    key: 'databaseAppUrl',
    secret: true,
    describe: 'a postgres:// URL of the runtime role',
  },
  host: { env: 'RINGVAKT_HOST', key: 'host', describe: 'an IP address to listen on' },
  smtpUrl: { env: 'RINGVAKT_SMTP_URL', key: 'smtpUrl', secret: true, describe: 'an smtp:// or smtps:// URL (credentials allowed)' },
  mailFrom: { env: 'RINGVAKT_MAIL_FROM', key: 'mailFrom', describe: 'the sender address of e-mail' },
  port: { env: 'RINGVAKT_PORT', key: 'port', describe: 'a TCP port, 0-65535' },
  publicUrl: { env: 'RINGVAKT_PUBLIC_URL', key: 'publicUrl', describe: 'an http(s) URL without a path' },
  tlsCertFile: { env: 'RINGVAKT_TLS_CERT_FILE', key: 'tlsCertFile', describe: 'a PEM certificate file' },
  tlsKeyFile: { env: 'RINGVAKT_TLS_KEY_FILE', key: 'tlsKeyFile', describe: 'a PEM private key file' },
  erasureLedgerFile: {
    env: 'RINGVAKT_ERASURE_LEDGER_FILE',
    key: 'erasureLedgerFile',
    describe: 'a file path (the erasure ledger mirror that a restore replays; keep it apart from the database)',
  },
  trustProxy: {
    env: 'RINGVAKT_TRUST_PROXY',
    key: 'trustProxy',
    describe: 'a comma-separated list of proxy IP addresses or CIDR ranges (empty: trust none)',
  },
  logLevel: {
    env: 'RINGVAKT_LOG_LEVEL',
    key: 'logLevel',
    describe: 'one of fatal, error, warn, info, debug, trace, silent',
  },
  bodyLimitBytes: {
    env: 'RINGVAKT_BODY_LIMIT_BYTES',
    key: 'bodyLimitBytes',
    describe: 'an integer number of bytes between 1024 and 67108864',
  },
  poolMax: { env: 'RINGVAKT_DB_POOL_MAX', key: 'poolMax', describe: 'an integer between 1 and 200' },
  keyProvider: {
    env: 'RINGVAKT_KEY_PROVIDER',
    key: 'keyProvider',
    describe: 'one of local, env, vault-transit',
  },
  rootKey: { env: 'RINGVAKT_ROOT_KEY', key: 'rootKey', secret: true, describe: 'the base64 encoding of 32 random bytes' },
  rootKeyPrevious: {
    env: 'RINGVAKT_ROOT_KEY_PREVIOUS',
    key: 'rootKeyPrevious',
    secret: true,
    describe: 'comma-separated base64 root keys being rotated out',
  },
  vaultAddress: { env: 'RINGVAKT_VAULT_ADDR', key: 'vaultAddress', describe: 'an http(s) URL of Vault or OpenBao' },
  vaultToken: { env: 'RINGVAKT_VAULT_TOKEN', key: 'vaultToken', secret: true, describe: 'a Vault token' },
  vaultMount: { env: 'RINGVAKT_VAULT_TRANSIT_MOUNT', key: 'vaultMount', describe: 'the transit mount path' },
  vaultKeyName: { env: 'RINGVAKT_VAULT_KEY_NAME', key: 'vaultKeyName', describe: 'the transit key name' },
  metricsToken: {
    env: 'RINGVAKT_METRICS_TOKEN',
    key: 'metricsToken',
    secret: true,
    describe: 'a bearer token of at least 24 characters that Prometheus presents to /metrics',
  },
  auditWitnessFile: {
    env: 'RINGVAKT_AUDIT_WITNESS_FILE',
    key: 'auditWitnessFile',
    describe: 'a file path to append signed audit checkpoints to (an outside witness)',
  },
  auditWitnessSyslog: {
    env: 'RINGVAKT_AUDIT_WITNESS_SYSLOG',
    key: 'auditWitnessSyslog',
    describe: 'udp://host:port or tcp://host:port of a syslog receiver for signed audit checkpoints (RFC 5424)',
  },
  auditWitnessWebhook: {
    env: 'RINGVAKT_AUDIT_WITNESS_WEBHOOK',
    key: 'auditWitnessWebhook',
    secret: true,
    describe: 'an http(s) URL that receives each signed audit checkpoint as a JSON POST',
  },
  auditWitnessWebhookToken: {
    env: 'RINGVAKT_AUDIT_WITNESS_WEBHOOK_TOKEN',
    key: 'auditWitnessWebhookToken',
    secret: true,
    describe: 'a bearer token of at least 24 characters sent to the checkpoint webhook',
  },
  alertSyslog: {
    env: 'RINGVAKT_ALERT_SYSLOG',
    key: 'alertSyslog',
    describe: "udp://host:port or tcp://host:port of the installation's syslog/SIEM receiver for every tenant's security alerts (RFC 5424)",
  },
  alertWebhookTargets: {
    env: 'RINGVAKT_ALERT_WEBHOOK_TARGETS',
    key: 'alertWebhookTargets',
    describe: '"public" (alert webhooks only over https to public addresses; the default) or "any" (also http, private and loopback addresses: development and tests only, refused with NODE_ENV=production)',
  },
  shutdownTimeoutMs: {
    env: 'RINGVAKT_SHUTDOWN_TIMEOUT_MS',
    key: 'shutdownTimeoutMs',
    describe: 'an integer number of milliseconds between 100 and 600000',
  },
  shutdownDrainMs: {
    env: 'RINGVAKT_SHUTDOWN_DRAIN_MS',
    key: 'shutdownDrainMs',
    describe: 'milliseconds between /readyz turning 503 and closing the listener, 0-60000 (at least the proxy health check interval times its fall count)',
  },
  shutdownCallDrainMs: {
    env: 'RINGVAKT_SHUTDOWN_CALL_DRAIN_MS',
    key: 'shutdownCallDrainMs',
    describe: 'milliseconds a stopping node waits for its calls in progress to end, 0-3600000 (its campaigns move to another node at once)',
  },
  backupDir: {
    env: 'RINGVAKT_BACKUP_DIR',
    key: 'backupDir',
    describe: 'a folder path for scheduled encrypted backups (default <data dir>/backups; copy them off-site)',
  },
  backupIntervalHours: {
    env: 'RINGVAKT_BACKUP_INTERVAL_HOURS',
    key: 'backupIntervalHours',
    describe: 'hours between scheduled backups, 1-168, or 0 for none',
  },
  backupKeep: {
    env: 'RINGVAKT_BACKUP_KEEP',
    key: 'backupKeep',
    describe: 'how many scheduled backups to keep in the backup folder, 1-1000',
  },
  backupFormat: {
    env: 'RINGVAKT_BACKUP_FORMAT',
    key: 'backupFormat',
    describe: 'ringvakt (default: no client tools needed) or pg_dump (a pg_dump custom-format archive inside the same encryption; needs pg_dump of the server\'s version or newer)',
  },
  simulatorShiftMs: {
    env: 'RINGVAKT_SIMULATOR_SHIFT_MS',
    key: 'simulatorShiftMs',
    describe: 'an integer number of milliseconds within ±30 days (the simulated telephony runs that far ahead of, or behind, the wall clock)',
  },
  simulatorCallees: {
    env: 'RINGVAKT_SIMULATOR_CALLEES',
    key: 'simulatorCallees',
    describe: '"mixed" (answers, machines, busy and unanswered lines in realistic shares) or "answering" (everyone answers in person: training and demonstrations)',
  },
} as const satisfies Record<string, SettingSpec>;
