import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.ts';

const problemsOf = (env: NodeJS.ProcessEnv): string[] => {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
};

describe('configuration', () => {
  it('has secure, working defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ host: '127.0.0.1', port: 8080, publicUrl: 'http://127.0.0.1:8080', trustProxy: [], tls: undefined, databaseUrl: undefined });
    expect(path.isAbsolute(config.dataDir)).toBe(true);
  });

  it('names the setting and what it expects for every wrong value at once', () => {
    const problems = problemsOf({ RINGVAKT_PORT: 'eighty', RINGVAKT_HOST: 'everywhere', RINGVAKT_LOG_LEVEL: 'loud', RINGVAKT_TRUST_PROXY: '10.0.0.0/33' });
    expect(problems).toHaveLength(4);
    expect(problems[0]).toMatch(/^RINGVAKT_HOST \(config key "host"\) must be an IP address to listen on; got "everywhere"$/);
    expect(problems.join('\n')).toMatch(/RINGVAKT_PORT .* must be a TCP port, 0-65535; got "eighty"/);
    expect(problems.join('\n')).toMatch(/RINGVAKT_TRUST_PROXY .* CIDR/);
  });

  it('never echoes a secret setting', () => {
    const problems = problemsOf({ DATABASE_URL: 'mysql://admin:hunter2-secret@db/x' });
    expect(problems).toEqual(['DATABASE_URL (config key "databaseUrl") must be a postgres:// URL of a role that may run migrations']);
  });

  it('requires TLS certificate and key together, and DATABASE_URL with DATABASE_APP_URL', () => {
    expect(problemsOf({ RINGVAKT_TLS_CERT_FILE: '/x.pem' })).toEqual(['RINGVAKT_TLS_CERT_FILE and RINGVAKT_TLS_KEY_FILE must be set together']);
    expect(problemsOf({ DATABASE_APP_URL: 'postgres://a@b/c' })).toEqual(['DATABASE_APP_URL needs DATABASE_URL as well (the role that runs migrations)']);
    expect(loadConfig({ RINGVAKT_TLS_CERT_FILE: '/c.pem', RINGVAKT_TLS_KEY_FILE: '/k.pem', RINGVAKT_PORT: '8443' }).publicUrl).toBe('https://127.0.0.1:8443');
  });

  it('checks the audit witness settings, never echoing the webhook or its token', () => {
    expect(problemsOf({ RINGVAKT_AUDIT_WITNESS_SYSLOG: 'syslog.example:514' })[0]).toMatch(/^RINGVAKT_AUDIT_WITNESS_SYSLOG .* udp:\/\/host:port or tcp:\/\/host:port/);
    const webhook = problemsOf({ RINGVAKT_AUDIT_WITNESS_WEBHOOK: 'ftp://hooks.example/s3cret', RINGVAKT_AUDIT_WITNESS_WEBHOOK_TOKEN: 'short' });
    expect(webhook).toHaveLength(2);
    expect(webhook.join('\n')).not.toMatch(/s3cret|short"/);
    expect(problemsOf({ RINGVAKT_AUDIT_WITNESS_WEBHOOK_TOKEN: 'x'.repeat(30) })).toEqual(['RINGVAKT_AUDIT_WITNESS_WEBHOOK_TOKEN needs RINGVAKT_AUDIT_WITNESS_WEBHOOK']);
    // The bearer token must not cross a network in clear: plain http only to this host.
    expect(problemsOf({ RINGVAKT_AUDIT_WITNESS_WEBHOOK: 'http://hooks.example/a' })).toEqual(['RINGVAKT_AUDIT_WITNESS_WEBHOOK must use https (plain http only to this host)']);
    expect(problemsOf({ RINGVAKT_AUDIT_WITNESS_WEBHOOK: 'http://127.0.0.1:9000/a' })).toEqual([]);
    const config = loadConfig({ RINGVAKT_AUDIT_WITNESS_SYSLOG: 'tcp://[::1]:6514', RINGVAKT_AUDIT_WITNESS_WEBHOOK: 'https://hooks.example/a' });
    expect(config.auditWitnesses).toEqual({ file: undefined, syslog: 'tcp://[::1]:6514', webhook: { url: 'https://hooks.example/a', token: undefined } });
  });

  it('holds alert webhooks to public https receivers unless told otherwise, and never in production; checks the alert syslog target', () => {
    expect(loadConfig({}).alertWebhookTargets).toBe('public');
    expect(loadConfig({ RINGVAKT_ALERT_WEBHOOK_TARGETS: 'any' }).alertWebhookTargets).toBe('any');
    expect(problemsOf({ RINGVAKT_ALERT_WEBHOOK_TARGETS: 'any', NODE_ENV: 'production' })).toEqual(['RINGVAKT_ALERT_WEBHOOK_TARGETS=any lets alert webhooks reach private and loopback addresses: never with NODE_ENV=production']);
    expect(problemsOf({ RINGVAKT_ALERT_WEBHOOK_TARGETS: 'private' })[0]).toMatch(/^RINGVAKT_ALERT_WEBHOOK_TARGETS /);
    expect(problemsOf({ RINGVAKT_ALERT_SYSLOG: 'siem.example:514' })[0]).toMatch(/^RINGVAKT_ALERT_SYSLOG .* udp:\/\/host:port or tcp:\/\/host:port/);
    expect(loadConfig({ RINGVAKT_ALERT_SYSLOG: 'tcp://siem.example:6514' }).alertSyslog).toBe('tcp://siem.example:6514');
  });

  it('reads a JSON file, lets the environment win, and rejects keys it does not know', () => {
    const folder = mkdtempSync(path.join(os.tmpdir(), 'rv-config-'));
    const file = path.join(folder, 'ringvakt.json');
    writeFileSync(file, JSON.stringify({ port: 9000, trustProxy: '127.0.0.1, 10.0.0.0/8', logLevel: 'warn' }));
    expect(loadConfig({ RINGVAKT_CONFIG: file, RINGVAKT_LOG_LEVEL: 'debug' })).toMatchObject({ port: 9000, trustProxy: ['127.0.0.1', '10.0.0.0/8'], logLevel: 'debug' });
    writeFileSync(file, JSON.stringify({ prot: 9000 }));
    expect(problemsOf({ RINGVAKT_CONFIG: file })).toEqual(['config file key "prot" is not a Ringvakt setting']);
    writeFileSync(file, '{ not json');
    expect(problemsOf({ RINGVAKT_CONFIG: file })).toEqual([`RINGVAKT_CONFIG file ${file} is not valid JSON`]);
  });
});
