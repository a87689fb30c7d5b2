import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { loadConfig } from '../../src/config.ts';
import { startServer, type RunningServer } from '../../src/server/serve.ts';
import { createUser } from '../../src/modules/users/users.repo.ts';
import { revokeSessions } from '../../src/modules/auth/sessions.ts';
import { createContact } from '../../src/modules/contacts/contacts.service.ts';
import { WEB_DIST } from '../../src/server/web-app.ts';
import { capturingLogger } from '../support/app.ts';
import { sessionFor, setPassword, totpAt } from '../support/auth.ts';
import { registerPersonalData } from '../support/canary.ts';
import { shiftIntoCallingHours } from '../support/calling-hours.ts';
import { launchChromium } from '../support/chromium.ts';
import { percentile } from '../support/percentile.ts';
import { freePort } from '../support/ports.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from '../support/database.ts';
import { seedTenant, type SeededTenant } from '../support/seed.ts';

/**
 * The web application in Debian's Chromium (playwright-core; never a downloaded browser), against
 * a real server with the telephony simulator on this run's PostgreSQL: an owner sets up the
 * organisation from the one-time link, an admin creates a campaign and imports a list, an agent
 * signs in with MFA and handles calls, a supervisor watches it live, a privacy officer erases a
 * subject. axe checks every page; screenshots go to artifacts/screenshots (CI prints the path).
 */
const SHOTS = path.resolve('artifacts', 'screenshots');
const AXE = readFileSync(path.resolve('node_modules', 'axe-core', 'axe.min.js'), 'utf8');
const PASSWORDS = { owner: 'harbour violet lantern 42', agent: 'quiet meadow copper kettle', officer: 'amber ledger orchard tide' };
const FIRST = ['Ingrid', 'Ola', 'Kari', 'Per', 'Liv', 'Nils', 'Sigrid', 'Arne'] as const;
const LAST = ['Bakken', 'Nordmann', 'Hansen', 'Olsen', 'Berg'] as const;
/** Forty people on London numbers (Ofcom's drama range, 020 7946 0xxx); the last one asks to be erased. */
const CONTACTS = FIRST.flatMap((first, i) => LAST.map((last, j) => [`${first} ${last}`, `0207946${String(100 + i * LAST.length + j).padStart(4, '0')}`] as const));
const SUBJECT = CONTACTS[CONTACTS.length - 1]!;

type Violation = { id: string; impact: string | null; nodes: unknown[] };

/**
 * The browsers reach the server through this loopback TCP relay, so a test can cut the network:
 * drop() severs every connection and refuses new ones until restore().
 */
async function networkBetween(listenPort: number, serverPort: number) {
  const sockets = new Set<net.Socket>();
  let down = false;
  const relay = (client: net.Socket) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(serverPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  };
  // "localhost" (a WebAuthn relying party cannot be an IP address) is 127.0.0.1 or ::1 to a browser: both loopbacks.
  const listeners = [net.createServer(relay), net.createServer(relay)];
  await new Promise<void>((resolve) => listeners[0]!.listen(listenPort, '127.0.0.1', resolve));
  await new Promise<void>((resolve, reject) => listeners[1]!.once('error', reject).listen(listenPort, '::1', resolve)).catch(() => undefined);
  return {
    drop() {
      down = true;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      down = false;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return Promise.all(listeners.map((listener) => new Promise<void>((resolve) => (listener.listening ? listener.close(() => resolve()) : resolve())))).then(() => undefined);
    },
  };
}

describe(`the web application in Chromium (${serverLabel()} server)`, () => {
  const capture = capturingLogger('info');
  let db: TestDatabase;
  let tenant: SeededTenant;
  let server: RunningServer;
  let browser: Browser;
  let origin = '';
  let network: Awaited<ReturnType<typeof networkBetween>> | undefined;
  let shiftMs = 0;
  let officerEmail = '';
  let ledgerDir = '';
  const cspViolations: string[] = [];
  const pagesChecked = new Set<string>();
  const contexts: BrowserContext[] = [];
  let agentSecret = '';
  let campaignId = '';
  let ownerSecret = '';
  let agent: Page;

  beforeAll(async () => {
    if (!existsSync(path.join(WEB_DIST, 'index.html'))) throw new Error('the web application is not built: run npm run build (npm test does)');
    mkdirSync(SHOTS, { recursive: true });
    db = await createTestDatabase({ logger: capture.logger });
    tenant = await seedTenant(db.handles, 'webapp');
    await setPassword(db.handles, tenant.tenantId, tenant.agent.id, PASSWORDS.agent);
    const { cipher } = await db.handles.crypto();
    officerEmail = 'officer@webapp.example';
    const officer = await db.handles.forTenant(tenant.tenantId).transaction(async (trx) => {
      const user = await createUser(trx, cipher, { email: officerEmail, displayName: 'Petra Personvern', role: 'privacy_officer' });
      await trx.updateTable('users').set({ status: 'active' }).where('id', '=', user.id).execute();
      return user;
    });
    await setPassword(db.handles, tenant.tenantId, officer.id, PASSWORDS.officer);
    registerPersonalData(officerEmail, 'Petra Personvern', ...CONTACTS.flatMap(([name, phone]) => [name, `+44${phone.slice(1)}`]));

    const port = await freePort();
    const browserPort = await freePort();
    origin = `http://localhost:${browserPort}`;
    shiftMs = shiftIntoCallingHours();
    ledgerDir = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-web-'));
    const config = loadConfig({
      DATABASE_URL: db.url,
      RINGVAKT_DATA_DIR: db.config.dataDir,
      RINGVAKT_HOST: '127.0.0.1',
      RINGVAKT_PORT: String(port),
      RINGVAKT_PUBLIC_URL: origin,
      RINGVAKT_LOG_LEVEL: 'warn',
      RINGVAKT_SIMULATOR_SHIFT_MS: String(shiftMs),
      // Every simulated callee answers: the preview call below must reach the agent.
      RINGVAKT_SIMULATOR_CALLEES: 'answering',
      RINGVAKT_ERASURE_LEDGER_FILE: path.join(ledgerDir, 'erasure-ledger.jsonl'),
    });
    server = await startServer(config, capture.logger);
    network = await networkBetween(browserPort, port);
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await network?.close();
    await server?.stop('test done');
    await db?.drop();
    if (ledgerDir) rmSync(ledgerDir, { recursive: true, force: true });
  });

  // A failed step leaves a picture of every open page behind.
  afterEach(async (context) => {
    if (context.task.result?.state !== 'fail') return;
    let index = 0;
    for (const browserContext of contexts) {
      for (const page of browserContext.pages()) {
        index += 1;
        await page.screenshot({ path: path.join(SHOTS, `${serverLabel()}-failed-${context.task.name.slice(0, 30).replace(/\W+/g, '-')}-${index}.png`), fullPage: true }).catch(() => undefined);
      }
    }
  });

  async function newPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1366, height: 800 }, locale: 'en-GB' });
    contexts.push(context);
    const page = await context.newPage();
    page.on('console', (message) => {
      if (/Content Security Policy|Refused to/i.test(message.text())) cspViolations.push(message.text());
    });
    page.on('dialog', (dialog) => void dialog.accept());
    // The browser's own report of anything the CSP refused, besides its console messages.
    await page.addInitScript(`document.addEventListener('securitypolicyviolation', (event) => (window.__csp ||= []).push(event.violatedDirective + ' ' + event.blockedURI))`);
    return page;
  }

  /** axe on the page as it stands: no serious or critical violation; and a screenshot for the record. */
  async function check(page: Page, name: string): Promise<void> {
    await page.evaluate(AXE);
    // Evaluated as text in the page (this file is not compiled against the DOM).
    const violations = (await page.evaluate(
      `axe.run(document, { resultTypes: ['violations'] }).then((result) => result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((node) => node.target) })))`,
    )) as Violation[];
    const serious = violations.filter((violation) => violation.impact === 'serious' || violation.impact === 'critical');
    expect(serious, `${name}: ${JSON.stringify(serious)}`).toEqual([]);
    pagesChecked.add(name);
    cspViolations.push(...((await page.evaluate('window.__csp ?? []')) as string[]));
    await page.screenshot({ path: path.join(SHOTS, `${serverLabel()}-${name}.png`), fullPage: true });
  }

  async function signIn(page: Page, email: string, password: string): Promise<void> {
    await page.getByLabel('Organisation').fill(tenant.slug);
    await page.getByLabel('E-mail').fill(email);
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  }

  /** Enrols an authenticator from the secret on screen; answers the secret. */
  async function enrol(page: Page): Promise<string> {
    await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
    const secret = (await page.getByTestId('totp-secret').textContent()) ?? '';
    expect(secret).toMatch(/^[A-Z2-7]{16,}$/);
    await check(page, 'mfa-enrolment');
    await page.getByLabel('Code').fill(await totpAt(secret, Math.floor(Date.now() / 1000)));
    await page.getByRole('button', { name: 'Confirm' }).click();
    await expect.poll(() => page.getByTestId('recovery-codes').locator('li').count()).toBe(10);
    await page.getByRole('button', { name: /I have saved them/ }).click();
    return secret;
  }

  let owner: Page;

  it('the owner sets a password from the one-time link, must enrol a second factor, and sets the policy', async () => {
    owner = await newPage();
    await owner.goto(tenant.setupLink.replace('http://127.0.0.1:8080', origin));
    // The token leaves the address bar at once.
    await expect.poll(() => owner.url()).toBe(`${origin}/setup`);
    await check(owner, 'setup');
    await owner.getByLabel('New password').fill(PASSWORDS.owner);
    await owner.getByLabel('The same password again').fill(PASSWORDS.owner);
    await owner.getByRole('button', { name: 'Set password' }).click();
    await owner.getByText('Your password is set').waitFor();
    await owner.getByRole('button', { name: 'Sign in' }).click();
    await check(owner, 'signin');

    // A wrong password: the server's problem, said plainly, and nothing else opens.
    await signIn(owner, tenant.owner.email, 'not the password at all');
    await owner.getByRole('alert').waitFor();
    await signIn(owner, tenant.owner.email, PASSWORDS.owner);
    ownerSecret = await enrol(owner);
    await owner.getByRole('navigation', { name: 'Main' }).waitFor();

    await owner.getByRole('link', { name: 'Administration' }).click();
    await owner.getByRole('cell', { name: 'Petra Personvern' }).waitFor();
    await owner.getByRole('heading', { name: 'Roles' }).waitFor();
    await check(owner, 'admin-users');
    await owner.getByRole('tab', { name: 'Security policy' }).click();
    await check(owner, 'admin-policy');
    // An invalid value: the field says why, from the server's problem+json.
    await owner.getByLabel('Sign out after idle minutes').fill('1');
    await owner.getByRole('button', { name: 'Save' }).click();
    await expect.poll(() => owner.getByLabel('Sign out after idle minutes').getAttribute('aria-invalid')).toBe('true');
    await owner.getByLabel('Sign out after idle minutes').fill('30');
    await owner.getByLabel('Every user must have a second factor').check();
    await owner.getByRole('button', { name: 'Save' }).click();
    await owner.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
    const policy = await db.superQuery<{ mfa: boolean; idle: number }>(`SELECT mfa_required_for_all AS mfa, session_idle_minutes AS idle FROM ringvakt.tenant_security_policies`);
    expect(policy.rows).toEqual([{ mfa: true, idle: 30 }]);
  }, 120_000);

  it('an admin loads the registry, creates a campaign, imports a list with column mapping and starts dialing', async () => {
    await owner.getByRole('tab', { name: 'Suppression' }).click();
    await owner.getByLabel('Registry', { exact: true }).selectOption('uk_tps');
    await owner.getByLabel('Registry file', { exact: true }).setInputFiles({ name: 'tps.txt', mimeType: 'text/plain', buffer: Buffer.from('02079460999\n') });
    await owner.getByRole('button', { name: 'Load registry file' }).click();
    await expect.poll(() => owner.getByTestId('registry-uk_tps').textContent()).toBe('1');
    await check(owner, 'admin-suppression');

    await owner.getByRole('tab', { name: 'Campaigns' }).click();
    const form = owner.getByRole('form', { name: 'New campaign' });
    await form.getByLabel('Name').fill('Winter offer');
    await form.getByLabel('Jurisdiction').selectOption('uk_ofcom');
    await form.getByLabel('Caller ID').fill('+442079460000');
    await form.getByLabel('Script').fill('Good morning! I am calling from Acme about our winter offer.');
    await form.getByLabel('Answering-machine detection').uncheck();
    // Retry rules and outcomes are the campaign's own: no retry after a failed call, and one outcome more.
    await form.getByLabel('Call again after Busy').uncheck();
    await form.getByLabel('Call again after Busy').check();
    await form.getByLabel('Minutes to wait after Busy').fill('45');
    await form.getByRole('button', { name: 'Add an outcome' }).click();
    await form.getByLabel('Code of outcome 7').fill('Bad Code!');
    await form.getByLabel('Label of outcome 7').fill('Wants a brochure');
    await form.getByRole('button', { name: 'Create campaign' }).click();
    // The server's verdict on the bad code shows beside the outcomes; nothing is created.
    await form.getByText(/^6\/code:/).waitFor();
    expect((await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.campaigns`)).rows[0]!.n).toBe(0);
    await form.getByLabel('Code of outcome 7').fill('brochure');
    await form.getByRole('button', { name: 'Create campaign' }).click();
    await owner.getByRole('cell', { name: 'Winter offer', exact: true }).waitFor();
    await check(owner, 'admin-campaigns');
    const campaign = await db.superQuery<{ id: string; retry_rules: { busy: { afterMinutes: number } }; dispositions: { code: string }[] }>(`SELECT id, retry_rules, dispositions FROM ringvakt.campaigns WHERE name = 'Winter offer'`);
    campaignId = campaign.rows[0]!.id;
    expect(campaign.rows[0]!.retry_rules.busy).toEqual({ retry: true, afterMinutes: 45 });
    expect(campaign.rows[0]!.dispositions.map((item) => item.code)).toContain('brochure');

    await owner.getByRole('tab', { name: 'Lists and import' }).click();
    const listForm = owner.getByRole('form', { name: 'New list' });
    await listForm.getByLabel('Name').fill('London leads');
    await listForm.getByLabel('Region').fill('GB');
    await listForm.getByRole('button', { name: 'Create list' }).click();
    await owner.getByRole('cell', { name: 'London leads', exact: true }).waitFor();
    const csv = ['navn;telefon;kundenr', ...CONTACTS.map(([name, phone], index) => `${name};${phone};K${index}`), 'Bad Row;12;K99'].join('\n');
    await owner.getByLabel('Into list').selectOption({ label: 'London leads' });
    await owner.getByLabel('CSV file').setInputFiles({ name: 'leads.csv', mimeType: 'text/csv', buffer: Buffer.from(`${csv}\n`) });
    // The columns are read in the browser and mapped by their headers; the person can change each.
    await expect.poll(() => owner.getByLabel('What column navn holds').inputValue()).toBe('name');
    await expect.poll(() => owner.getByLabel('What column telefon holds').inputValue()).toBe('phone');
    await owner.getByLabel('What column kundenr holds').selectOption('externalId');
    // The lawful basis the organisation holds for everyone in the file: it must say where it comes from.
    await owner.getByLabel('Basis', { exact: true }).selectOption('consent');
    await owner.getByLabel('Purpose', { exact: true }).selectOption('sales');
    await check(owner, 'admin-import-mapping');
    await owner.getByRole('button', { name: 'Start import' }).click();
    await expect.poll(() => owner.getByLabel('Where it comes from').getAttribute('aria-invalid')).toBe('true');
    expect((await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.contact_imports`)).rows[0]!.n).toBe(0);
    await owner.getByLabel('Where it comes from').fill('Web form, winter offer sign-up');
    await owner.getByRole('button', { name: 'Start import' }).click();
    await expect.poll(() => owner.getByTestId('import-status').textContent(), { timeout: 60_000 }).toMatch(/^Done/);
    expect(await owner.getByTestId('import-status').textContent()).toContain(`${CONTACTS.length} new`);
    expect(await owner.getByTestId('import-status').textContent()).toContain('1 rejected');
    await owner.getByRole('link', { name: 'Download the reject file' }).waitFor();
    await expect.poll(() => owner.getByTestId('members-London leads').textContent()).toBe(String(CONTACTS.length));
    const grants = await db.superQuery<{ n: number; source: string }>(`SELECT count(*)::int AS n, min(source) AS source FROM ringvakt.consent_events WHERE action = 'grant' AND purpose = 'sales' AND basis = 'consent'`);
    expect(grants.rows[0]).toEqual({ n: CONTACTS.length, source: 'Web form, winter offer sign-up' });
    await owner.getByLabel('Campaign for London leads').selectOption({ label: 'Winter offer' });
    await expect.poll(async () => (await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.contact_lists WHERE campaign_id = $1`, [campaignId])).rows[0]!.n).toBe(1);
    await check(owner, 'admin-lists');

    await owner.getByRole('tab', { name: 'Campaigns' }).click();
    await owner.getByRole('row', { name: /Winter offer/ }).getByRole('button', { name: 'Start' }).click();
    await owner.getByRole('row', { name: /Winter offer/ }).getByText('Active').waitFor();
  }, 120_000);

  it('an agent signs in with MFA, takes calls and files outcomes (once, even double-clicked, after the session ended, after the network dropped); the supervisor sees it live', async () => {
    const supervisor = await newPage();
    // The owner's browser session, in a second tab: the wallboard.
    const ownerCookies = await owner.context().cookies();
    await supervisor.context().addCookies(ownerCookies);
    await supervisor.goto(`${origin}/wallboard`);
    await supervisor.getByRole('heading', { name: /Wallboard/ }).waitFor();

    agent = await newPage();
    await agent.goto(origin);
    await signIn(agent, tenant.agent.email, PASSWORDS.agent);
    // The policy now asks every user for a second factor.
    agentSecret = await enrol(agent);
    await agent.getByText('My state').waitFor();
    // What an agent may not do is not offered: no administration, no reveal.
    expect(await agent.getByRole('link', { name: 'Administration' }).count()).toBe(0);
    // Bytes on the wire (gzip) of every script the first load fetched, as the browser counted them.
    const firstLoad = (await agent.evaluate(
      `performance.getEntriesByType('resource').filter((entry) => entry.name.endsWith('.js')).reduce((sum, entry) => sum + entry.encodedBodySize, 0)`,
    )) as number;
    process.stdout.write(`web: agent desktop first load ${(firstLoad / 1024).toFixed(1)} KiB of gzipped JavaScript\n`);
    expect(firstLoad).toBeGreaterThan(10_000);
    expect(firstLoad).toBeLessThanOrEqual(300 * 1024);
    await check(agent, 'agent-offline');

    await agent.getByLabel('Campaign').selectOption({ label: 'Winter offer' });
    await agent.getByRole('button', { name: 'Go available' }).click();
    await expect.poll(() => agent.getByTestId('agent-state').textContent()).toBe('Available');
    await expect.poll(() => supervisor.getByTestId('tile-available').textContent(), { timeout: 15_000 }).toBe('1');

    const handled: string[] = [];
    const ROUNDS = 4;
    for (let round = 0; round < ROUNDS; round += 1) {
      if (round === ROUNDS - 1) {
        // The network drops while the agent waits; a call connects meanwhile. Back online, the
        // desktop reconnects, fetches the state again and shows the call it missed.
        network!.drop();
        await expect.poll(() => agent.getByRole('status').filter({ hasText: /Reconnecting|Connecting/ }).count(), { timeout: 15_000 }).toBe(1);
        await expect
          .poll(async () => (await db.superQuery<{ state: string }>(`SELECT state FROM ringvakt.agent_states WHERE user_id = $1`, [tenant.agent.id])).rows[0]?.state, { timeout: 120_000, interval: 250 })
          .toBe('on_call');
        expect(await agent.getByTestId('call-state').count()).toBe(0);
        network!.restore();
      }
      const offlineRound = round === ROUNDS - 1;
      // (The call missed while offline may have ended on its own by the time the desktop is back.)
      await expect
        .poll(() => agent.getByTestId('call-state').textContent().catch(() => null), { timeout: 120_000, interval: 250 })
        .toMatch(offlineRound ? /^(Connected|Ended)/ : /^Connected$/);
      await agent.getByTestId('contact-name').waitFor({ timeout: 10_000 });
      const name = (await agent.getByTestId('contact-name').textContent()) ?? '';
      expect(CONTACTS.map(([contact]) => contact)).toContain(name);
      // Masked: the full number is never on the agent's screen.
      const shown = (await agent.getByTestId('contact-number').textContent()) ?? '';
      expect(shown).toMatch(/^\+44 .*•/);
      expect(shown.replace(/\D/g, '').length).toBeLessThanOrEqual(5);
      expect(await agent.getByRole('button', { name: 'Show full number' }).count()).toBe(0);
      if (!offlineRound) await expect.poll(() => supervisor.getByTestId('tile-on-call').textContent(), { timeout: 10_000 }).toBe('1');
      if (round === 0) {
        await check(agent, 'agent-on-call');
        await check(supervisor, 'wallboard');
      }
      await agent.getByLabel('Notes').fill(`Round ${round}: wants the winter offer by e-mail`);
      if ((await agent.getByTestId('call-state').textContent()) === 'Connected') await agent.getByRole('button', { name: 'Hang up' }).click();
      await expect.poll(() => agent.getByTestId('call-state').textContent(), { timeout: 15_000 }).toMatch(/^Ended/);
      if (round === 1) {
        // The session ends mid-shift: the next click asks for sign-in, then goes through with the notes intact.
        await db.handles.forTenant(tenant.tenantId).transaction((trx) => revokeSessions(trx, { userId: tenant.agent.id }, 'revoked'));
        await new Promise((resolve) => setTimeout(resolve, 300));
        await agent.getByRole('button', { name: 'Sale' }).click();
        const dialog = agent.getByRole('dialog', { name: 'Your session has ended' });
        await dialog.waitFor();
        await dialog.getByLabel('E-mail').fill(tenant.agent.email);
        await dialog.getByLabel('Password', { exact: true }).fill(PASSWORDS.agent);
        await dialog.getByRole('button', { name: 'Sign in', exact: true }).click();
        await dialog.getByLabel('Code').fill(await totpAt(agentSecret, Math.floor(Date.now() / 1000) + 30));
        await dialog.getByRole('button', { name: 'Verify' }).click();
      } else {
        // A double click files once.
        await agent.getByRole('button', { name: 'Sale' }).dblclick();
      }
      await expect.poll(() => agent.getByTestId('disposition-filed').textContent(), { timeout: 15_000 }).toBe(`Filed Sale for ${name}.`);
      const attempt = await db.superQuery<{ id: string; disposition: string; notes: boolean }>(
        `SELECT id, disposition, notes_ciphertext IS NOT NULL AS notes FROM ringvakt.dial_attempts WHERE agent_id = $1 AND disposition IS NOT NULL AND NOT (id = ANY($2::uuid[])) ORDER BY disposed_at DESC`,
        [tenant.agent.id, handled],
      );
      expect(attempt.rows).toHaveLength(1);
      expect(attempt.rows[0]).toMatchObject({ disposition: 'sale', notes: true });
      handled.push(attempt.rows[0]!.id);
    }
    const filed = await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE action = 'call.disposition'`);
    expect(filed.rows[0]!.n).toBe(ROUNDS);

    // How long each call event took from the server to this screen (event time is the simulator's, shifted).
    const measured = async (kind: string) =>
      ((await agent.evaluate(`window.ringvaktMetrics?.${kind} ?? []`)) as number[]).map((value) => value + shiftMs).sort((a, b) => a - b);
    const latencies = await measured('callEventLatencyMs');
    const details = await measured('contactDetailsLatencyMs');
    const p95 = percentile(latencies, 0.95);
    process.stdout.write(`web: call event to agent screen, ${latencies.length} events: p50 ${percentile(latencies, 0.5)} ms, p95 ${p95} ms (all: ${latencies.join(', ')})\n`);
    process.stdout.write(`web: call event to contact details on screen, ${details.length} events: p50 ${percentile(details, 0.5)} ms, p95 ${percentile(details, 0.95)} ms\n`);
    // Two events a call (connected, ended), less the one missed while offline. How fast they come
    // (p95 ≤ 250 ms) is a target for `npm run bench -- agent-screen`, on a machine not running the
    // rest of the suite; here the figures are printed only.
    expect(latencies.length).toBeGreaterThanOrEqual(2 * ROUNDS - 1);

    // The dialer keeps calling for an available agent, so a call may reach them just before the
    // click (the server refuses a pause while a call is coming or connected). As an agent would:
    // take it, file it, then pause.
    const agentState = () => agent.getByTestId('agent-state').textContent();
    for (let attempt = 0; attempt < 6; attempt += 1) {
      await expect.poll(agentState, { timeout: 15_000 }).toMatch(/^(Available|Paused|Call coming|On a call)$/);
      const state = await agentState();
      if (state === 'Paused') break;
      if (state === 'Available') {
        // The button is disabled again the moment a call is coming: then take that call first.
        await agent.getByRole('button', { name: 'Pause', exact: true }).click({ timeout: 5_000 }).catch(() => undefined);
        await expect.poll(agentState, { timeout: 15_000 }).toMatch(/^(Paused|Call coming|On a call)$/);
        continue;
      }
      await expect.poll(() => agent.getByTestId('call-state').textContent().catch(() => null), { timeout: 60_000, interval: 250 }).toMatch(/^(Connected|Ended)/);
      if ((await agent.getByTestId('call-state').textContent()) === 'Connected') await agent.getByRole('button', { name: 'Hang up' }).click();
      await expect.poll(() => agent.getByTestId('call-state').textContent(), { timeout: 15_000 }).toMatch(/^Ended/);
      await agent.getByRole('button', { name: 'Sale' }).click();
      await expect.poll(() => agent.getByTestId('disposition-filed').textContent(), { timeout: 15_000 }).toMatch(/^Filed Sale for /);
    }
    await expect.poll(() => agent.getByTestId('agent-state').textContent(), { timeout: 15_000 }).toBe('Paused');
    await expect.poll(() => supervisor.getByTestId('tile-available').textContent(), { timeout: 10_000 }).toBe('0');
    await check(supervisor, 'wallboard-after');
  }, 420_000);

  it('in a preview campaign the agent sees each contact before the call, skips one and calls another; a number on the TPS is refused at dial time', async () => {
    const form = owner.getByRole('form', { name: 'New campaign' });
    await form.getByLabel('Name').fill('Spring survey');
    await form.getByLabel('Mode').selectOption('preview');
    await form.getByLabel('Jurisdiction').selectOption('uk_ofcom');
    await form.getByLabel('Caller ID').fill('+442079460000');
    await form.getByLabel('Script').fill('Hello, this is Acme with a two-minute survey about our service.');
    // The agent is on the line from the first ring: no answering-machine detection.
    await form.getByLabel('Answering-machine detection').uncheck();
    await form.getByRole('button', { name: 'Create campaign' }).click();
    await owner.getByRole('cell', { name: 'Spring survey', exact: true }).waitFor();
    const created = await db.superQuery<{ id: string; mode: string }>(`SELECT id, mode FROM ringvakt.campaigns WHERE name = 'Spring survey'`);
    expect(created.rows[0]?.mode).toBe('preview');
    const surveyId = created.rows[0]!.id;
    // Three people, due in this order; the first one's number is on the TPS loaded earlier.
    const people = [['Nora Vik', '02079460999'], ['Tor Lunde', '02079460901'], ['Eva Strand', '02079460902']] as const;
    registerPersonalData(...people.flatMap(([name, phone]) => [name, `+44${phone.slice(1)}`]));
    const crypto = await db.handles.crypto();
    const ids = await db.handles.forTenant(tenant.tenantId).transaction(async (trx) => {
      const list = await trx.insertInto('contact_lists').values({ name: 'Survey panel', default_region: 'GB', campaign_id: surveyId }).returning('id').executeTakeFirstOrThrow();
      const made: string[] = [];
      for (const [name, number] of people) made.push((await createContact(trx, crypto, { name, phones: [{ kind: 'work', number }] }, { defaultRegion: 'GB' })).id);
      await trx.insertInto('contact_list_members').values(made.map((contactId) => ({ list_id: list.id, contact_id: contactId }))).execute();
      return made;
    });
    await owner.getByRole('row', { name: /Spring survey/ }).getByRole('button', { name: 'Start' }).click();
    await owner.getByRole('row', { name: /Spring survey/ }).getByText('Active').waitFor();
    for (const [index, id] of ids.entries()) await db.superQuery(`UPDATE ringvakt.campaign_contacts SET next_at = now() - make_interval(mins => $2) WHERE contact_id = $1`, [id, 10 - index]);

    await agent.reload();
    await agent.getByLabel('Campaign').selectOption({ label: 'Spring survey' });
    await agent.getByRole('button', { name: 'Go available' }).click();
    await expect.poll(() => agent.getByTestId('preview-name').textContent(), { timeout: 15_000 }).toBe('Nora Vik');
    expect(await agent.getByTestId('preview-number').textContent()).toMatch(/^\+44 .*•/);
    await agent.getByText('Hello, this is Acme with a two-minute survey').waitFor();
    await check(agent, 'agent-preview');
    // Nora's number is on the TPS: the dialer refuses the call, the agent is told why and sees the next person.
    await agent.getByRole('button', { name: 'Call', exact: true }).click();
    await expect.poll(() => agent.getByTestId('last-dial').textContent(), { timeout: 15_000 }).toBe('Nora Vik: not called — the number is on a do-not-call list');
    await expect.poll(() => agent.getByTestId('preview-name').textContent(), { timeout: 15_000 }).toBe('Tor Lunde');
    await agent.getByRole('button', { name: 'Skip' }).click();
    await expect.poll(() => agent.getByTestId('preview-name').textContent(), { timeout: 15_000 }).toBe('Eva Strand');
    await agent.getByRole('button', { name: 'Call', exact: true }).click();
    // Eva answers (a few seconds of ringing) and comes to this agent.
    await expect.poll(() => agent.getByTestId('call-state').textContent().catch(() => null), { timeout: 30_000, interval: 100 }).toBe('Connected');
    expect(await agent.getByTestId('contact-name').textContent()).toBe('Eva Strand');
    await agent.getByRole('button', { name: 'Hang up' }).click();
    await expect.poll(() => agent.getByTestId('call-state').textContent(), { timeout: 15_000 }).toMatch(/^Ended/);
    await agent.getByRole('button', { name: 'Sale' }).click();
    await expect.poll(() => agent.getByTestId('disposition-filed').textContent(), { timeout: 15_000 }).toBe('Filed Sale for Eva Strand.');
    // Nobody else is due (Tor comes back in 30 minutes): the agent is told so.
    await agent.getByText('No contact is due now').waitFor({ timeout: 15_000 });

    const attempts = await db.superQuery<{ contact_id: string; state: string; outcome: string; skip_reason: string | null; requested_by: string; agent_id: string | null; disposition: string | null }>(
      `SELECT contact_id, state, outcome, skip_reason, requested_by, agent_id, disposition FROM ringvakt.dial_attempts WHERE campaign_id = $1 ORDER BY reserved_at`,
      [surveyId],
    );
    expect(attempts.rows).toEqual([
      { contact_id: ids[0], state: 'skipped', outcome: 'skipped', skip_reason: 'suppression', requested_by: tenant.agent.id, agent_id: null, disposition: null },
      { contact_id: ids[2], state: 'ended', outcome: 'live', skip_reason: null, requested_by: tenant.agent.id, agent_id: tenant.agent.id, disposition: 'sale' },
    ]);
    const skipped = await db.superQuery<{ last_outcome: string; attempts: number }>(`SELECT last_outcome, attempts FROM ringvakt.campaign_contacts WHERE contact_id = $1`, [ids[1]]);
    expect(skipped.rows[0]).toEqual({ last_outcome: 'preview_skipped', attempts: 0 });
    const choices = await db.superQuery<{ action: string; n: number }>(`SELECT action, count(*)::int AS n FROM ringvakt.audit_events WHERE action LIKE 'call.preview%' GROUP BY action ORDER BY action`);
    expect(choices.rows).toEqual([
      { action: 'call.preview_dial', n: 2 },
      { action: 'call.preview_skip', n: 1 },
    ]);
    await agent.getByRole('button', { name: 'Pause', exact: true }).click();
    await expect.poll(() => agent.getByTestId('agent-state').textContent(), { timeout: 15_000 }).toBe('Paused');
  }, 180_000);

  it('a privacy officer erases a subject on request; the security center shows the ledger holds', async () => {
    const officer = await newPage();
    await officer.goto(`${origin}/privacy`);
    await signIn(officer, officerEmail, PASSWORDS.officer);
    await enrol(officer);
    await officer.getByRole('heading', { name: 'Data-subject requests' }).waitFor();
    await check(officer, 'privacy-requests');
    const form = officer.getByRole('form', { name: 'Register a request' });
    await form.getByLabel('Kind').selectOption('erasure');
    await form.getByLabel('Requester’s name').fill(SUBJECT[0]);
    await form.getByLabel('Subject’s phone').fill(SUBJECT[1]);
    await form.getByLabel('Region').fill('GB');
    await form.getByRole('button', { name: 'Register' }).click();
    await officer.getByRole('button', { name: 'Mark verified' }).click();
    await expect.poll(() => officer.getByTestId('request-status').textContent()).toBe('Verified');
    await officer.getByText('1 matching contact').waitFor();
    // Erasure waits for the end of any call with the person (the last progressive call dialed as the
    // agent paused may still be playing its information message): refused until then, by design.
    await expect
      .poll(async () => (await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.dial_attempts WHERE state IN ('reserved', 'dialing', 'answered', 'connected')`)).rows[0]!.n, { timeout: 60_000 })
      .toBe(0);
    await officer.getByRole('button', { name: 'Erase' }).click();
    await expect.poll(() => officer.getByTestId('case-message').textContent(), { timeout: 15_000 }).toBe('1 contact erased.');
    const statuses = await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.contacts WHERE status = 'erased'`);
    expect(statuses.rows[0]!.n).toBe(1);
    for (const tab of ['Retention', 'Records of processing', 'Processors', 'Breaches']) {
      await officer.getByRole('tab', { name: tab }).click();
      await check(officer, `privacy-${tab.toLowerCase().replaceAll(' ', '-')}`);
    }
    // A breach: registered, the 72-hour clock running, the decision with its reason, the authority notified.
    const breachForm = officer.getByRole('form', { name: 'Register a breach' });
    await breachForm.getByLabel('Title').fill('Laptop with an export left on a train');
    await breachForm.getByLabel('What happened').fill('An unencrypted export of one campaign was on a laptop that was lost.');
    await breachForm.getByRole('button', { name: 'Register a breach' }).click();
    await expect.poll(() => officer.getByTestId('breach-countdown').textContent()).toMatch(/^7[012] h \d+ min left$/);
    const decision = officer.getByRole('form', { name: 'Decision on notifying the authority' });
    await decision.getByLabel('Reason').fill('short');
    await decision.getByRole('button', { name: 'Record the decision' }).click();
    await expect.poll(() => decision.getByLabel('Reason').getAttribute('aria-invalid')).toBe('true');
    await decision.getByLabel('Reason').fill('Names and phone numbers of about 40 people, unencrypted.');
    await decision.getByRole('button', { name: 'Record the decision' }).click();
    await officer.getByRole('button', { name: 'Authority notified now' }).click();
    await officer.getByText(/^Authority notified /).waitFor();
    await expect.poll(() => officer.getByRole('row', { name: /Laptop with an export/ }).getByText('notified').count()).toBe(1);
    await check(officer, 'privacy-breach-case');
    // A legal hold on the campaign, then released.
    await officer.getByRole('tab', { name: 'Retention' }).click();
    const holdForm = officer.getByRole('form', { name: 'Place a hold' });
    await holdForm.getByLabel('Campaign').selectOption({ label: 'Winter offer' });
    await holdForm.getByLabel('Reason').fill('Complaint to the authority about this campaign');
    await holdForm.getByRole('button', { name: 'Place a hold' }).click();
    await officer.getByRole('cell', { name: 'Campaign Winter offer' }).waitFor();
    await officer.getByRole('button', { name: 'Release' }).click();
    await officer.getByText(/^released /).waitFor();

    // The owner's security center: the ledger verified on demand, with the erasure in the log.
    await owner.getByRole('link', { name: 'Security' }).click();
    await owner.getByTestId('audit-table').waitFor();
    await check(owner, 'security-audit');
    await owner.getByRole('tab', { name: 'Ledger' }).click();
    await owner.getByRole('button', { name: 'Verify the ledger now' }).click();
    await expect.poll(() => owner.getByTestId('verify-result').textContent(), { timeout: 60_000 }).toMatch(/^The ledger holds/);
    await check(owner, 'security-ledger');
    // An incident opened by hand, contained from its case: an address range blocked.
    await owner.getByRole('tab', { name: 'Alerts and incidents' }).click();
    await owner.getByTestId('response-status').waitFor();
    await check(owner, 'security-alerts');
    const newIncident = owner.getByRole('form', { name: 'Open an incident by hand' });
    await newIncident.getByLabel('Title').fill('Sign-in attempts from one network');
    await newIncident.getByRole('button', { name: 'Open' }).click();
    await owner.getByRole('heading', { name: /^INC-\d{4}-001: Sign-in attempts/ }).waitFor();
    const containment = owner.getByRole('form', { name: 'Containment' });
    await containment.getByLabel('Action').selectOption('block_network');
    await containment.getByLabel('Address range (CIDR)').fill('203.0.113.0/24');
    await containment.getByLabel('Reason').fill('Password spraying from this range');
    await containment.getByRole('button', { name: 'Carry out' }).click();
    const confirm = owner.getByRole('dialog', { name: 'Confirm it is you' });
    await Promise.race([confirm.waitFor({ timeout: 5_000 }).catch(() => undefined), owner.getByTestId('incident-timeline').getByText(/Blocked 203\.0\.113\.0\/24/).waitFor({ timeout: 5_000 }).catch(() => undefined)]);
    if (await confirm.isVisible()) {
      await confirm.getByLabel('Password').fill(PASSWORDS.owner);
      await confirm.getByLabel('Code').fill(await totpAt(ownerSecret, Math.floor(Date.now() / 1000) + 30));
      await confirm.getByRole('button', { name: 'Confirm' }).click();
    }
    await owner.getByTestId('incident-timeline').getByText(/Blocked 203\.0\.113\.0\/24/).waitFor({ timeout: 15_000 });
    await check(owner, 'security-incident');
    // A security policy published meanwhile: the owner's next step asks for it to be read and acknowledged first, then goes on.
    const publisher = await sessionFor(db.handles, tenant.tenantId, tenant.owner.id);
    const published = await fetch(`${origin}/api/v1/security/documents`, {
      method: 'POST',
      headers: { cookie: `__Host-rv_session=${publisher.cookies['__Host-rv_session']}`, 'x-csrf-token': publisher.csrf, origin, 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'policy', title: 'Information security policy', version: '2026.1', content: 'Lock your screen when you leave your desk.\nNever share your password or your authenticator.\nReport anything odd to the security contact at once.' }),
    });
    expect(published.status).toBe(201);
    await owner.getByRole('button', { name: 'Back to the list' }).click();
    const attest = owner.getByRole('dialog', { name: 'Before you continue' });
    await attest.getByText('Never share your password or your authenticator.', { exact: false }).waitFor({ timeout: 15_000 });
    await check(owner, 'attestation');
    await attest.getByLabel('I have read and understood the security policy.').check();
    await attest.getByRole('button', { name: 'Acknowledge' }).click();
    await owner.getByTestId('incidents-table').getByText(/^INC-\d{4}-001$/).waitFor({ timeout: 15_000 });
    const acknowledged = await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.security_attestations WHERE user_id = $1`, [tenant.owner.id]);
    expect(acknowledged.rows[0]?.n).toBe(1);
    // The wrong password at the start is on the chart.
    await owner.getByRole('tab', { name: 'Sign-in failures' }).click();
    await expect.poll(() => owner.getByTestId('failed-total').textContent()).toMatch(/^[1-9]\d* failed sign-ins? in the last 48 hours/);
    for (const tab of ['Sign-in failures', 'Sessions', 'API tokens']) {
      await owner.getByRole('tab', { name: tab }).click();
      await check(owner, `security-${tab.toLowerCase().replaceAll(' ', '-')}`);
    }
    await owner.getByRole('link', { name: 'My account' }).click();
    await owner.getByText('Where you are signed in').waitFor();
    await check(owner, 'account');

    // The compliance center: the checks run on demand; an organisational control gets its evidence
    // as a file; an access review opens with every user; the reports are a click away.
    await owner.getByRole('link', { name: 'Compliance' }).click();
    await owner.getByTestId('controls-table').waitFor();
    await owner.getByRole('button', { name: 'Run the checks now' }).click();
    await expect.poll(() => owner.getByTestId('compliance-run').textContent(), { timeout: 15_000 }).toMatch(/^Last evidence run .*: \d+ checks pass, \d+ fail\. Digest [0-9a-f]{16}…$/);
    const screening = owner.getByTestId('controls-table').getByRole('row').filter({ hasText: 'RV-ORG-01' });
    await screening.getByText('No current evidence: add a document.').waitFor();
    await check(owner, 'compliance-controls');
    await owner.getByRole('tab', { name: 'Documents' }).click();
    const addDocument = owner.getByRole('form', { name: 'Add the document' });
    await addDocument.getByLabel('Control').selectOption('RV-ORG-01');
    await addDocument.getByLabel('Title').fill('Screening procedure, signed by HR');
    await addDocument.getByLabel(/^File/).setInputFiles({ name: 'screening.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.7\nScreening procedure\n%%EOF\n') });
    await addDocument.getByLabel('Evidence date').fill(new Date().toISOString().slice(0, 10));
    await addDocument.getByLabel('Expires').fill(new Date(Date.now() + 365 * 86_400_000).toISOString().slice(0, 10));
    await addDocument.getByRole('button', { name: 'Add the document' }).click();
    const added = owner.getByTestId('documents-table').getByRole('row').filter({ hasText: 'Screening procedure, signed by HR' });
    await added.getByText(/^SHA-256 [0-9a-f]{16}…$/).waitFor({ timeout: 15_000 });
    await check(owner, 'compliance-documents');
    await owner.getByRole('tab', { name: 'Controls' }).click();
    await screening.getByText('Screening procedure, signed by HR').waitFor({ timeout: 15_000 });
    await owner.getByRole('tab', { name: 'Access reviews' }).click();
    const openReview = owner.getByRole('form', { name: 'Open a review of every user' });
    await openReview.getByLabel('Title').fill('Q4 access review');
    await openReview.getByRole('button', { name: 'Open a review of every user' }).click();
    const reviewStepUp = owner.getByRole('dialog', { name: 'Confirm it is you' });
    await Promise.race([reviewStepUp.waitFor({ timeout: 5_000 }).catch(() => undefined), owner.getByTestId('review-items').waitFor({ timeout: 5_000 }).catch(() => undefined)]);
    if (await reviewStepUp.isVisible()) {
      await reviewStepUp.getByLabel('Password').fill(PASSWORDS.owner);
      await reviewStepUp.getByLabel('Code').fill(await totpAt(ownerSecret, Math.floor(Date.now() / 1000) + 30));
      await reviewStepUp.getByRole('button', { name: 'Confirm' }).click();
    }
    await owner.getByRole('heading', { name: 'Q4 access review' }).waitFor({ timeout: 15_000 });
    await expect.poll(() => owner.getByTestId('review-items').getByRole('button', { name: 'Keep' }).count()).toBeGreaterThan(1);
    await check(owner, 'compliance-review');
    await owner.getByRole('tab', { name: 'Reports' }).click();
    await owner.getByTestId('risks-table').getByText('RISK-01').waitFor();
    expect(await owner.getByTestId('report-links').getByRole('link', { name: 'XLSX' }).getAttribute('href')).toBe('/api/v1/compliance/questionnaire?format=xlsx');
    await check(owner, 'compliance-reports');
    await owner.getByRole('link', { name: 'My account' }).click();
    await owner.getByText('Where you are signed in').waitFor();

    // A passkey (Chromium's virtual authenticator stands in for the device): registered here, then
    // it signs the owner in on its own, with no password.
    const cdp = await owner.context().newCDPSession(owner);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });
    await owner.getByRole('button', { name: 'Add a passkey' }).click();
    const stepUp = owner.getByRole('dialog', { name: 'Confirm it is you' });
    await Promise.race([stepUp.waitFor({ timeout: 5_000 }).catch(() => undefined), owner.getByRole('button', { name: 'Remove' }).waitFor({ timeout: 5_000 }).catch(() => undefined)]);
    if (await stepUp.isVisible()) {
      // A sensitive change long after sign-in asks for proof again, then goes on.
      await stepUp.getByLabel('Password').fill(PASSWORDS.owner);
      await stepUp.getByLabel('Code').fill(await totpAt(ownerSecret, Math.floor(Date.now() / 1000) + 30));
      await stepUp.getByRole('button', { name: 'Confirm' }).click();
    }
    await expect.poll(() => owner.getByRole('button', { name: 'Remove' }).count(), { timeout: 15_000 }).toBe(1);
    await owner.getByRole('button', { name: 'Sign out' }).click();
    await owner.getByLabel('Organisation').fill(tenant.slug);
    await owner.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await owner.getByRole('navigation', { name: 'Main' }).waitFor({ timeout: 15_000 });
    const methods = await db.superQuery<{ methods: string[] }>(`SELECT methods FROM ringvakt.sessions WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1`, [tenant.owner.id]);
    expect(methods.rows[0]?.methods).toContain('passkey');
    await owner.getByRole('link', { name: 'My account' }).click();
    await owner.getByText('Where you are signed in').waitFor();
    // Norwegian bokmål: the same page, in the other language.
    await owner.getByLabel('Language').selectOption('nb');
    await owner.getByText('Hvor du er logget inn').waitFor();
    await check(owner, 'account-nb');
  }, 180_000);

  it('kept to the content security policy on every page (no inline script or style was needed)', () => {
    expect(pagesChecked.size).toBeGreaterThanOrEqual(15);
    expect(cspViolations).toEqual([]);
    // No personal data of the contacts reached the server's log (checked again by the canary on drop).
    for (const [name] of CONTACTS) expect(capture.lines.join('\n')).not.toContain(name);
  });
});

