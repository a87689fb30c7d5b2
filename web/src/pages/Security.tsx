import { useEffect, useRef, useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { del, post, query } from '../api.ts';
import { Badge, Field, Head, ProblemNote, useAction, useFormat, useLoad } from '../components/ui.tsx';
import { useSession } from '../App.tsx';
import { TabbedPage } from '../components/TabbedPage.tsx';
import { AlertsAndIncidents } from './SecurityIncidents.tsx';

type AuditEvent = { id: string; leafIndex: number | null; occurredAt: string; actorType: string; actorId: string | null; action: string; targetType: string | null; targetId: string | null; outcome: string; sourceIp: string | null; details: Record<string, unknown> };
type Checkpoint = { treeSize: number; rootHash: string; signedAt: string; signingKeyId: string };
type Verdict = { ok: boolean; problem: string | null; events: number; sealed: number; checkpoints: number; checkpoint: { treeSize: number; signedAt: string; rootHash: string } | null; tookMs: number };
type Token = { id: string; name: string; scopes: string[]; createdAt: string; expiresAt: string; lastUsedAt: string | null; revokedAt: string | null };
type User = { id: string; displayName: string; status: string };
type SessionRow = { id: string; current: boolean; createdAt: string; lastSeenAt: string; methods: string[]; sourceIp: string | null; userAgent: string | null };


/** The security center: the audit log, alerts and incidents, the ledger's proof of integrity, sign-in failures, sessions, API tokens. */
export default function Security() {
  return (
    <TabbedPage
      area="security"
      panels={{ audit: () => <AuditLog />, alerts: () => <AlertsAndIncidents />, ledger: () => <Ledger />, signins: () => <SignInFailures />, sessions: () => <Sessions />, tokens: () => <Tokens /> }}
    />
  );
}

function AuditLog() {
  const { t } = useTranslation();
  const format = useFormat();
  const [filters, setFilters] = useState({ action: '', outcome: '', from: '', to: '' });
  const [pages, setPages] = useState<(string | null)[]>([null]);
  const url = `/api/v1/audit/search${query({
    action: filters.action,
    outcome: filters.outcome,
    from: filters.from ? new Date(filters.from).toISOString() : undefined,
    to: filters.to ? new Date(filters.to).toISOString() : undefined,
    before: pages[pages.length - 1] ?? undefined,
    limit: 50,
  })}`;
  const events = useLoad<{ items: AuditEvent[]; next: string | null }>(url);
  const apply = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setPages([null]);
    setFilters({ action: String(form.get('action') ?? '').trim(), outcome: String(form.get('outcome') ?? ''), from: String(form.get('from') ?? ''), to: String(form.get('to') ?? '') });
  };
  return (
    <section className="panel">
      <h2>{t('security.audit')}</h2>
      <form className="inline-form" onSubmit={apply} aria-label={t('security.filters')}>
        <Field label={t('security.action')} name="action" problem={events.problem} hint={t('security.actionHint')}>
          {(attributes) => <input {...attributes} defaultValue={filters.action} list="audit-actions" />}
        </Field>
        <datalist id="audit-actions">
          {['auth.', 'auth.login', 'auth.denied', 'user.', 'contact.', 'contact.reveal', 'campaign.', 'privacy.', 'subject.erase', 'audit.', 'keys.'].map((value) => (
            <option key={value} value={value} />
          ))}
        </datalist>
        <Field label={t('security.outcome')} name="outcome" problem={events.problem}>
          {(attributes) => (
            <select {...attributes} defaultValue={filters.outcome}>
              <option value="">{t('security.any')}</option>
              <option value="success">{t('outcome.success')}</option>
              <option value="denied">{t('outcome.denied')}</option>
              <option value="failed">{t('outcome.failed')}</option>
            </select>
          )}
        </Field>
        <Field label={t('security.from')} name="from" problem={events.problem}>
          {(attributes) => <input {...attributes} type="datetime-local" defaultValue={filters.from} />}
        </Field>
        <Field label={t('security.to')} name="to" problem={events.problem}>
          {(attributes) => <input {...attributes} type="datetime-local" defaultValue={filters.to} />}
        </Field>
        <button type="submit" className="primary">
          {t('security.apply')}
        </button>
      </form>
      <ProblemNote problem={events.problem} />
      <table data-testid="audit-table">
        <Head cells={[t('common.when'), t('security.action'), t('security.outcome'), t('security.actor'), t('security.target'), t('security.leaf')]} />
        <tbody>
          {(events.data?.items ?? []).map((event) => (
            <tr key={event.id}>
              <td>{format.time(event.occurredAt)}</td>
              <td>
                <code>{event.action}</code>
              </td>
              <td>
                <Badge tone={event.outcome === 'success' ? 'ok' : event.outcome === 'denied' ? 'warn' : 'bad'}>{t(`outcome.${event.outcome}`)}</Badge>
              </td>
              <td>
                {event.actorType}
                {event.actorId ? ` ${event.actorId.slice(0, 8)}` : ''}
              </td>
              <td>{event.targetType ? `${event.targetType} ${event.targetId?.slice(-8) ?? ''}` : '—'}</td>
              <td>{event.leafIndex ?? <span className="hint">{t('security.unsealed')}</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="row">
        <button type="button" disabled={pages.length <= 1} onClick={() => setPages(pages.slice(0, -1))}>
          {t('common.newer')}
        </button>
        <button type="button" disabled={!events.data?.next} onClick={() => setPages([...pages, events.data?.next ?? null])}>
          {t('common.older')}
        </button>
      </div>
    </section>
  );
}

function Ledger() {
  const { t } = useTranslation();
  const format = useFormat();
  const checkpoint = useLoad<Checkpoint>('/api/v1/audit/checkpoint');
  const [verdict, setVerdict] = useState<Verdict>();
  const verify = useAction(async () => setVerdict(await post<Verdict>('/api/v1/audit/verify')));
  return (
    <section className="panel">
      <h2>{t('security.ledger')}</h2>
      <p>{t('security.ledgerExplain')}</p>
      {checkpoint.data ? (
        <dl className="facts">
          <dt>{t('security.treeSize')}</dt>
          <dd data-testid="tree-size">{checkpoint.data.treeSize}</dd>
          <dt>{t('security.signedAt')}</dt>
          <dd>{format.time(checkpoint.data.signedAt)}</dd>
          <dt>{t('security.rootHash')}</dt>
          <dd>
            <code className="hash">{checkpoint.data.rootHash}</code>
          </dd>
          <dt>{t('security.signingKey')}</dt>
          <dd>
            <code>{checkpoint.data.signingKeyId}</code>
          </dd>
        </dl>
      ) : (
        <p className="hint">{checkpoint.problem?.status === 404 ? t('security.noCheckpoint') : t('common.loading')}</p>
      )}
      <button type="button" className="primary" onClick={() => void verify.run()} disabled={verify.busy}>
        {verify.busy ? t('security.verifying') : t('security.verify')}
      </button>
      <ProblemNote problem={verify.problem} />
      {verdict ? (
        <p role="status" data-testid="verify-result" className={verdict.ok ? 'ok' : 'problem'}>
          {verdict.ok ? t('security.verifiedOk', { sealed: verdict.sealed, checkpoints: verdict.checkpoints, ms: verdict.tookMs }) : t('security.verifiedBad', { problem: verdict.problem })}
        </p>
      ) : null}
    </section>
  );
}

function SignInFailures() {
  const { t } = useTranslation();
  const data = useLoad<{ buckets: { hour: string; failed: number; lockouts: number }[] }>('/api/v1/audit/sign-in-failures?hours=48');
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!host.current || !data.data) return;
    const buckets = data.data.buckets;
    const plot = new uPlot(
      {
        width: Math.max(320, host.current.clientWidth),
        height: 220,
        series: [{}, { label: t('security.failedSignIns'), stroke: '#b3261e', fill: 'rgba(179,38,30,0.12)', width: 2 }, { label: t('security.lockouts'), stroke: '#8a5a00', width: 2 }],
        scales: { y: { range: (_u, _min, max) => [0, Math.max(5, max)] } },
      },
      [buckets.map((bucket) => Date.parse(bucket.hour) / 1000), buckets.map((bucket) => bucket.failed), buckets.map((bucket) => bucket.lockouts)],
      host.current,
    );
    return () => plot.destroy();
  }, [data.data, t]);
  const total = (data.data?.buckets ?? []).reduce((sum, bucket) => sum + bucket.failed, 0);
  return (
    <section className="panel">
      <h2>{t('security.signins')}</h2>
      <ProblemNote problem={data.problem} />
      <p data-testid="failed-total">{t('security.failedTotal', { count: total })}</p>
      <div ref={host} role="img" aria-label={t('security.signinsChart')} />
    </section>
  );
}

function Sessions() {
  const { t } = useTranslation();
  const format = useFormat();
  const { can } = useSession();
  const users = useLoad<{ items: User[] }>(can('users:read') ? '/api/v1/users?limit=200' : null);
  const [userId, setUserId] = useState('');
  const sessions = useLoad<{ items: SessionRow[] }>(userId ? `/api/v1/users/${userId}/sessions` : null);
  const end = useAction(async () => {
    await del(`/api/v1/users/${userId}/sessions`);
    sessions.reload();
  });
  return (
    <section className="panel">
      <h2>{t('security.sessions')}</h2>
      <label htmlFor="session-user">{t('security.user')}</label>
      <select id="session-user" value={userId} onChange={(event) => setUserId(event.target.value)}>
        <option value="">{t('security.chooseUser')}</option>
        {(users.data?.items ?? []).map((user) => (
          <option key={user.id} value={user.id}>
            {user.displayName}
          </option>
        ))}
      </select>
      <ProblemNote problem={sessions.problem ?? end.problem} />
      {userId && sessions.data ? (
        <>
          <SessionTable rows={sessions.data.items} format={format} />
          {can('users:manage') && sessions.data.items.length > 0 ? (
            <button type="button" className="danger" onClick={() => void end.run()} disabled={end.busy}>
              {t('security.endAll')}
            </button>
          ) : null}
        </>
      ) : null}
    </section>
  );
}

export function SessionTable({ rows, format, onEnd }: { rows: SessionRow[]; format: ReturnType<typeof useFormat>; onEnd?: (id: string) => void }) {
  const { t } = useTranslation();
  return (
    <table>
      <Head cells={[t('security.started'), t('security.lastSeen'), t('security.methods'), t('security.source'), onEnd ? t('common.actions') : null]} />
      <tbody>
        {rows.map((row) => (
          <tr key={row.id}>
            <td>{format.time(row.createdAt)}</td>
            <td>{format.time(row.lastSeenAt)}</td>
            <td>{row.methods.join(', ')}</td>
            <td>
              {row.sourceIp ?? '—'} {row.userAgent ? <span className="hint">{row.userAgent.slice(0, 60)}</span> : null}
            </td>
            {onEnd ? (
              <td>
                {row.current ? (
                  <Badge tone="info">{t('security.thisSession')}</Badge>
                ) : (
                  <button type="button" className="small" onClick={() => onEnd(row.id)}>
                    {t('security.end')}
                  </button>
                )}
              </td>
            ) : null}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Tokens() {
  const { t } = useTranslation();
  const format = useFormat();
  const tokens = useLoad<{ items: Token[] }>('/api/v1/api-tokens');
  const [shown, setShown] = useState<string>();
  const create = useAction(async (body: Record<string, unknown>) => {
    const answer = await post<{ token: string }>('/api/v1/api-tokens', body);
    setShown(answer.token);
    tokens.reload();
  });
  const revoke = useAction(async (id: string) => {
    await del(`/api/v1/api-tokens/${id}`);
    tokens.reload();
  });
  return (
    <section className="panel">
      <h2>{t('security.tokens')}</h2>
      <ProblemNote problem={tokens.problem ?? revoke.problem} />
      <table>
        <Head cells={[t('admin.name'), t('security.scopes'), t('security.expires'), t('security.lastUsed'), t('common.actions')]} />
        <tbody>
          {(tokens.data?.items ?? []).map((token) => (
            <tr key={token.id}>
              <td>{token.name}</td>
              <td>{token.scopes.join(', ')}</td>
              <td>{format.date(token.expiresAt)}</td>
              <td>{format.time(token.lastUsedAt)}</td>
              <td>
                {token.revokedAt ? (
                  <Badge tone="muted">{t('security.revoked')}</Badge>
                ) : (
                  <button type="button" className="small" onClick={() => void revoke.run(token.id)} disabled={revoke.busy}>
                    {t('security.revoke')}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {shown ? (
        <div className="secret" role="status">
          <p>{t('security.tokenOnce')}</p>
          <code data-testid="new-token">{shown}</code>
        </div>
      ) : null}
      <form
        className="inline-form"
        aria-label={t('security.newToken')}
        onSubmit={(event) => {
          event.preventDefault();
          const form = new FormData(event.currentTarget);
          const days = Number(form.get('days'));
          void create.run({ name: String(form.get('name')), scopes: [String(form.get('scope'))], expiresAt: new Date(Date.now() + days * 86_400_000).toISOString() });
        }}
      >
        <h3>{t('security.newToken')}</h3>
        <Field label={t('admin.name')} name="name" problem={create.problem}>
          {(attributes) => <input {...attributes} required />}
        </Field>
        <Field label={t('security.scope')} name="scopes" problem={create.problem}>
          {(attributes) => (
            <select {...attributes} name="scope" defaultValue="audit:read">
              {['audit:read', 'tenant:read', 'contacts:read', 'agents:monitor', 'campaigns:manage'].map((scope) => (
                <option key={scope} value={scope}>
                  {scope}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label={t('security.days')} name="expiresAt" problem={create.problem}>
          {(attributes) => <input {...attributes} name="days" type="number" min={1} max={365} defaultValue={30} />}
        </Field>
        <button type="submit" className="primary" disabled={create.busy}>
          {t('security.create')}
        </button>
        <ProblemNote problem={create.problem} />
      </form>
    </section>
  );
}

