import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { settings, type SettingSpec } from './config-settings.ts';
import { z } from './zod.ts';

/**
 * The one configuration loader. Every setting has an environment variable and a key in the
 * optional JSON file named by RINGVAKT_CONFIG; the environment wins. A wrong value stops the start
 * with a message naming the setting and what it expects. Secret settings never echo their value.
 */

type SettingName = keyof typeof settings;

const postgresUrl = z
  .string()
  .refine((value) => /^postgres(ql)?:\/\//.test(value) && URL.canParse(value));

const ipOrCidr = (value: string): boolean => {
  const [address, bits, ...rest] = value.split('/');
  if (rest.length > 0 || address === undefined) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
};

const integerText = (min: number, max: number) =>
  z
    .union([z.number(), z.string().regex(min < 0 ? /^-?\d+$/ : /^\d+$/)])
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const schemas = {
  dataDir: z.string().min(1).max(4096),
  databaseUrl: postgresUrl.optional(),
  databaseAppUrl: postgresUrl.optional(),
  host: z.string().refine((value) => isIP(value) !== 0),
  smtpUrl: z.string().refine((value) => /^smtps?:\/\//.test(value) && URL.canParse(value)).optional(),
  mailFrom: z.string().regex(/^[^\s@<>]+@[^\s@<>]+$/),
  port: integerText(0, 65535),
  publicUrl: z
    .string()
    .refine((value) => /^https?:\/\/[^/?#]+\/?$/.test(value) && URL.canParse(value))
    .optional(),
  tlsCertFile: z.string().min(1).optional(),
  erasureLedgerFile: z.string().min(1).max(4096).optional(),
  tlsKeyFile: z.string().min(1).optional(),
  trustProxy: z
    .string()
    .transform((value) =>
      value
        .split(',')
        .map((part) => part.trim())
        .filter((part) => part !== ''),
    )
    .pipe(z.array(z.string().refine(ipOrCidr))),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  bodyLimitBytes: integerText(1024, 64 * 1024 * 1024),
  poolMax: integerText(1, 200),
  shutdownTimeoutMs: integerText(100, 600_000),
  shutdownDrainMs: integerText(0, 60_000),
  shutdownCallDrainMs: integerText(0, 3_600_000),
  backupDir: z.string().min(1).max(4096).optional(),
  backupIntervalHours: integerText(0, 168),
  backupKeep: integerText(1, 1000),
  backupFormat: z.enum(['ringvakt', 'pg_dump']),
  simulatorShiftMs: integerText(-30 * 86_400_000, 30 * 86_400_000),
  simulatorCallees: z.enum(['mixed', 'answering']),
  keyProvider: z.enum(['local', 'env', 'vault-transit']),
  auditWitnessFile: z.string().min(1).max(4096).optional(),
  auditWitnessSyslog: z
    .string()
    .refine((value) => /^(udp|tcp):\/\/[^/?#@]+:\d{1,5}\/?$/.test(value) && URL.canParse(value))
    .optional(),
  alertSyslog: z
    .string()
    .refine((value) => /^(udp|tcp):\/\/[^/?#@]+:\d{1,5}\/?$/.test(value) && URL.canParse(value))
    .optional(),
  alertWebhookTargets: z.enum(['public', 'any']),
  auditWitnessWebhook: z
    .string()
    .refine((value) => /^https?:\/\//.test(value) && URL.canParse(value))
    .optional(),
  auditWitnessWebhookToken: z.string().min(24).max(500).optional(),
  metricsToken: z.string().min(24).max(500).optional(),
  rootKey: z.string().min(1).max(200).optional(),
  rootKeyPrevious: z.string().min(1).max(2000).optional(),
  vaultAddress: z.string().refine((value) => /^https?:\/\//.test(value) && URL.canParse(value)).optional(),
  vaultToken: z.string().min(1).max(1000).optional(),
  vaultMount: z.string().regex(/^[A-Za-z0-9_\-/]{1,100}$/),
  vaultKeyName: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/),
} satisfies Record<SettingName, z.ZodType>;

const defaults: Partial<Record<SettingName, string>> = {
  dataDir: './data',
  host: '127.0.0.1',
  port: '8080',
  trustProxy: '',
  logLevel: 'info',
  bodyLimitBytes: String(1024 * 1024),
  poolMax: '10',
  shutdownTimeoutMs: '10000',
  shutdownDrainMs: '0',
  shutdownCallDrainMs: '60000',
  backupIntervalHours: '24',
  backupKeep: '7',
  backupFormat: 'ringvakt',
  simulatorShiftMs: '0',
  simulatorCallees: 'mixed',
  alertWebhookTargets: 'public',
  keyProvider: 'local',
  vaultMount: 'transit',
  vaultKeyName: 'ringvakt-root',
  mailFrom: 'ringvakt@localhost',
};

/** `ringvakt`: our binary COPY tables; `pg_dump`: a pg_dump custom-format archive (needs the client tools). Both encrypted alike. */
export type BackupFormat = 'ringvakt' | 'pg_dump';

export type Config = {
  dataDir: string;
  /** The erasure ledger mirror (JSON lines); default `<dataDir>/erasure-ledger.jsonl`. */
  erasureLedgerFile: string;
  databaseUrl: string | undefined;
  databaseAppUrl: string | undefined;
  host: string;
  port: number;
  publicUrl: string;
  /** Outgoing e-mail: without an SMTP URL, messages stay in the outbox (`ringvakt mail outbox`). */
  mail: { smtpUrl: string | undefined; from: string };
  tls: { certFile: string; keyFile: string } | undefined;
  trustProxy: string[];
  logLevel: z.infer<typeof schemas.logLevel>;
  bodyLimitBytes: number;
  poolMax: number;
  shutdownTimeoutMs: number;
  /**
   * On SIGTERM, how long the server goes on serving with /readyz at 503 before it stops accepting
   * connections: long enough for a load balancer's health check to take it out of rotation, so
   * that no request (not only the idempotent ones a proxy may retry) meets a closing node.
   */
  shutdownDrainMs: number;
  /** How long a stopping node follows its calls in progress before it exits (RINGVAKT_SHUTDOWN_CALL_DRAIN_MS). */
  shutdownCallDrainMs: number;
  /** Scheduled backups (one node at a time takes them): where, how often (hours; 0 = none), how many kept, in which format. */
  backups: { dir: string; intervalHours: number; keep: number; format: BackupFormat };
  /**
   * How far the simulated telephony's clock runs from the wall clock. Calls obey calling hours in
   * the callee's time zone: a demonstration or a browser test at night shifts the simulator into
   * the working day. The dialer runs on the telephony clock, so the times it writes (attempts,
   * agent states, recordings, pacing, calling-window checks) are shifted too; sessions, the audit
   * ledger's own times and every other part keep real time. Never set it in production: the
   * product's telephony is the simulator only until a real provider is configured.
   */
  simulatorShiftMs: number;
  /** The simulated callees: realistic shares of outcomes, or everyone answering (training, demonstrations). */
  simulatorCallees: 'mixed' | 'answering';
  auditWitnesses: {
    file: string | undefined;
    syslog: string | undefined;
    webhook: { url: string; token: string | undefined } | undefined;
  };
  metricsToken: string | undefined;
  /** The installation's syslog/SIEM receiver of every tenant's security alerts. */
  alertSyslog: string | undefined;
  /** Where alert webhooks may point: public https addresses only, or anywhere (development and tests). */
  alertWebhookTargets: 'public' | 'any';
  keys:
    | { provider: 'local' }
    | { provider: 'env'; rootKey: string | undefined; previous: string | undefined }
    | { provider: 'vault-transit'; address: string; token: string; mount: string; keyName: string };
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

function readConfigFile(filePath: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(filePath, 'utf8');
  } catch {
    throw new ConfigError([`RINGVAKT_CONFIG names ${filePath}, which cannot be read`]);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigError([`RINGVAKT_CONFIG file ${filePath} is not valid JSON`]);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError([`RINGVAKT_CONFIG file ${filePath} must hold a JSON object`]);
  }
  const known = new Set(Object.values(settings).map((spec) => spec.key as string));
  const unknown = Object.keys(parsed).filter((key) => !known.has(key));
  if (unknown.length > 0) {
    throw new ConfigError(
      unknown.map((key) => `config file key "${key}" is not a Ringvakt setting`),
    );
  }
  return parsed as Record<string, unknown>;
}

/** Loads and validates the configuration; throws ConfigError listing every wrong setting. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const file = env.RINGVAKT_CONFIG ? readConfigFile(env.RINGVAKT_CONFIG) : {};
  const problems: string[] = [];
  const values: Partial<Record<SettingName, unknown>> = {};

  for (const name of Object.keys(settings) as SettingName[]) {
    const spec: SettingSpec = settings[name];
    const fromEnv = env[spec.env];
    const raw = fromEnv !== undefined && fromEnv !== '' ? fromEnv : (file[spec.key] ?? defaults[name]);
    const result = schemas[name].safeParse(raw);
    if (result.success) {
      values[name] = result.data;
    } else {
      const shown =
        spec.secret || raw === undefined ? '' : `; got ${JSON.stringify(String(raw)).slice(0, 80)}`;
      problems.push(`${spec.env} (config key "${spec.key}") must be ${spec.describe}${shown}`);
    }
  }

  const tlsCertFile = values.tlsCertFile as string | undefined;
  const tlsKeyFile = values.tlsKeyFile as string | undefined;
  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) {
    problems.push('RINGVAKT_TLS_CERT_FILE and RINGVAKT_TLS_KEY_FILE must be set together');
  }
  if (values.databaseAppUrl !== undefined && values.databaseUrl === undefined) {
    problems.push('DATABASE_APP_URL needs DATABASE_URL as well (the role that runs migrations)');
  }
  if (values.keyProvider === 'vault-transit' && (!values.vaultAddress || !values.vaultToken)) {
    problems.push('RINGVAKT_KEY_PROVIDER=vault-transit needs RINGVAKT_VAULT_ADDR and RINGVAKT_VAULT_TOKEN');
  }
  if (values.keyProvider === 'env' && !values.rootKey) {
    problems.push('RINGVAKT_KEY_PROVIDER=env needs RINGVAKT_ROOT_KEY (base64 of 32 random bytes)');
  }
  if (typeof values.auditWitnessWebhook === 'string' && values.auditWitnessWebhook.startsWith('http:')) {
    const host = new URL(values.auditWitnessWebhook).hostname.replace(/^\[|\]$/g, '');
    if (!(host === 'localhost' || host === '::1' || host.startsWith('127.'))) {
      problems.push('RINGVAKT_AUDIT_WITNESS_WEBHOOK must use https (plain http only to this host)');
    }
  }
  if (values.alertWebhookTargets === 'any' && env.NODE_ENV === 'production') {
    problems.push('RINGVAKT_ALERT_WEBHOOK_TARGETS=any lets alert webhooks reach private and loopback addresses: never with NODE_ENV=production');
  }
  if (values.auditWitnessWebhookToken !== undefined && values.auditWitnessWebhook === undefined) {
    problems.push('RINGVAKT_AUDIT_WITNESS_WEBHOOK_TOKEN needs RINGVAKT_AUDIT_WITNESS_WEBHOOK');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const keys: Config['keys'] =
    values.keyProvider === 'env'
      ? { provider: 'env', rootKey: values.rootKey as string, previous: values.rootKeyPrevious as string | undefined }
      : values.keyProvider === 'vault-transit'
        ? {
            provider: 'vault-transit',
            address: values.vaultAddress as string,
            token: values.vaultToken as string,
            mount: values.vaultMount as string,
            keyName: values.vaultKeyName as string,
          }
        : { provider: 'local' };

  const tls = tlsCertFile && tlsKeyFile ? { certFile: tlsCertFile, keyFile: tlsKeyFile } : undefined;
  const host = values.host as string;
  const port = values.port as number;
  const hostInUrl = host.includes(':') ? `[${host}]` : host;
  const publicUrl =
    (values.publicUrl as string | undefined)?.replace(/\/$/, '') ??
    `${tls ? 'https' : 'http'}://${hostInUrl}:${port}`;

  return {
    dataDir: path.resolve(values.dataDir as string),
    erasureLedgerFile: path.resolve((values.erasureLedgerFile as string | undefined) ?? path.join(values.dataDir as string, 'erasure-ledger.jsonl')),
    databaseUrl: values.databaseUrl as string | undefined,
    databaseAppUrl: values.databaseAppUrl as string | undefined,
    host,
    port,
    publicUrl,
    mail: { smtpUrl: values.smtpUrl as string | undefined, from: values.mailFrom as string },
    tls,
    trustProxy: values.trustProxy as string[],
    logLevel: values.logLevel as Config['logLevel'],
    bodyLimitBytes: values.bodyLimitBytes as number,
    poolMax: values.poolMax as number,
    shutdownTimeoutMs: values.shutdownTimeoutMs as number,
    shutdownDrainMs: values.shutdownDrainMs as number,
    shutdownCallDrainMs: values.shutdownCallDrainMs as number,
    backups: {
      dir: path.resolve((values.backupDir as string | undefined) ?? path.join(values.dataDir as string, 'backups')),
      intervalHours: values.backupIntervalHours as number,
      keep: values.backupKeep as number,
      format: values.backupFormat as BackupFormat,
    },
    simulatorShiftMs: values.simulatorShiftMs as number,
    simulatorCallees: values.simulatorCallees as Config['simulatorCallees'],
    auditWitnesses: {
      file: values.auditWitnessFile ? path.resolve(values.auditWitnessFile as string) : undefined,
      syslog: values.auditWitnessSyslog as string | undefined,
      webhook: values.auditWitnessWebhook
        ? { url: values.auditWitnessWebhook as string, token: values.auditWitnessWebhookToken as string | undefined }
        : undefined,
    },
    metricsToken: values.metricsToken as string | undefined,
    alertSyslog: values.alertSyslog as string | undefined,
    alertWebhookTargets: values.alertWebhookTargets as 'public' | 'any',
    keys,
  };
}
