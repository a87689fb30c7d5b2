import { useEffect, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { get, post, put } from '../api.ts';
import { Field, Head, ProblemNote, useAction, useFormat, useLoad } from '../components/ui.tsx';

/** Privacy center, retention tab: policies per category, dry run and sweeps, legal holds. */

type Policy = { category: string; retainDays: number; action: string; updatedAt: string };
type Sweep = { id: string; dryRun: boolean; state: string; startedAt: string; finishedAt: string | null; report: Record<string, unknown>; errorCode: string | null };
const CATEGORIES = ['contacts_inactive', 'interactions', 'notes', 'recordings', 'audit_events', 'import_rejects', 'exports'] as const;

type Hold = { id: string; scope: string; contactId: string | null; campaignId: string | null; reason: string; createdAt: string; releasedAt: string | null };

/** Legal holds: what they cover is kept from retention and erasure until released. */
export function LegalHolds() {
  const { t } = useTranslation();
  const format = useFormat();
  const holds = useLoad<{ items: Hold[] }>('/api/v1/privacy/legal-holds');
  const campaigns = useLoad<{ items: { id: string; name: string }[] }>('/api/v1/campaigns');
  const place = useAction(async (body: Record<string, unknown>) => {
    await post('/api/v1/privacy/legal-holds', body);
    holds.reload();
  });
  const release = useAction(async (id: string) => {
    await post(`/api/v1/privacy/legal-holds/${id}/release`);
    holds.reload();
  });
  const campaignName = (id: string | null) => campaigns.data?.items.find((campaign) => campaign.id === id)?.name ?? id ?? '—';
  return (
    <section className="panel">
      <h2>{t('holds.title')}</h2>
      <p className="hint">{t('holds.explain')}</p>
      <ProblemNote problem={holds.problem ?? release.problem} />
      <table>
        <Head cells={[t('holds.covers'), t('holds.reason'), t('holds.placed'), t('admin.status')]} />
        <tbody>
          {(holds.data?.items ?? []).map((hold) => (
            <tr key={hold.id}>
              <td>{hold.campaignId ? t('holds.campaign', { name: campaignName(hold.campaignId) }) : t('holds.contact')}</td>
              <td>{hold.reason}</td>
              <td>{format.time(hold.createdAt)}</td>
              <td>
                {hold.releasedAt ? (
                  t('holds.released', { at: format.time(hold.releasedAt) })
                ) : (
                  <button type="button" className="small" onClick={() => void release.run(hold.id)} disabled={release.busy}>
                    {t('holds.release')}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        className="inline-form"
        aria-label={t('holds.place')}
        onSubmit={(event) => {
          event.preventDefault();
          const form = new FormData(event.currentTarget);
          void place.run({ campaignId: String(form.get('campaignId')), reason: String(form.get('reason')) });
        }}
        noValidate
      >
        <h3>{t('holds.place')}</h3>
        <Field label={t('agent.campaign')} name="campaignId" problem={place.problem}>
          {(attributes) => (
            <select {...attributes} required>
              {(campaigns.data?.items ?? []).map((campaign) => (
                <option key={campaign.id} value={campaign.id}>
                  {campaign.name}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label={t('holds.reason')} name="reason" problem={place.problem}>
          {(attributes) => <input {...attributes} required />}
        </Field>
        <button type="submit" className="primary" disabled={place.busy}>
          {t('holds.place')}
        </button>
        <ProblemNote problem={place.problem} />
      </form>
    </section>
  );
}

export function Retention() {
  const { t } = useTranslation();
  const format = useFormat();
  const policies = useLoad<{ items: Policy[] }>('/api/v1/privacy/retention-policies');
  const sweeps = useLoad<{ items: Sweep[] }>('/api/v1/privacy/retention-sweeps');
  const [watching, setWatching] = useState<Sweep>();
  const save = useAction(async (category: string, retainDays: number, action: string) => {
    await put(`/api/v1/privacy/retention-policies/${category}`, { retainDays, action });
    policies.reload();
  });
  const sweep = useAction(async (dryRun: boolean) => {
    const started = await post<{ id: string }>('/api/v1/privacy/retention-sweeps', { dryRun });
    setWatching(await get<Sweep>(`/api/v1/privacy/retention-sweeps/${started.id}`));
  });
  useEffect(() => {
    if (!watching || watching.finishedAt) return;
    const timer = setTimeout(() => void get<Sweep>(`/api/v1/privacy/retention-sweeps/${watching.id}`).then(setWatching), 1000);
    return () => clearTimeout(timer);
  }, [watching]);
  useEffect(() => {
    if (watching?.finishedAt) sweeps.reload();
  }, [watching?.finishedAt, sweeps.reload]);
  const byCategory = new Map((policies.data?.items ?? []).map((policy) => [policy.category, policy]));
  return (
    <section className="panel">
      <h2>{t('privacy.retention')}</h2>
      <ProblemNote problem={policies.problem ?? save.problem} />
      <table>
        <Head cells={[t('privacy.category'), t('privacy.retainDays'), t('privacy.action'), t('common.actions')]} />
        <tbody>
          {CATEGORIES.map((category) => {
            const policy = byCategory.get(category);
            return (
              <tr key={category}>
                <td>{t(`category.${category}`)}</td>
                <td colSpan={3}>
                  <form
                    className="row"
                    onSubmit={(event) => {
                      event.preventDefault();
                      const form = new FormData(event.currentTarget);
                      void save.run(category, Number(form.get('retainDays')), String(form.get('action')));
                    }}
                  >
                    <label className="visually-hidden" htmlFor={`days-${category}`}>
                      {t('privacy.retainDaysFor', { category: t(`category.${category}`) })}
                    </label>
                    <input id={`days-${category}`} name="retainDays" type="number" min={1} defaultValue={policy?.retainDays ?? ''} placeholder={t('privacy.noPolicy')} required />
                    <label className="visually-hidden" htmlFor={`action-${category}`}>
                      {t('privacy.actionFor', { category: t(`category.${category}`) })}
                    </label>
                    <select id={`action-${category}`} name="action" defaultValue={policy?.action ?? 'delete'}>
                      <option value="delete">{t('privacy.delete')}</option>
                      <option value="anonymise">{t('privacy.anonymise')}</option>
                    </select>
                    <button type="submit" className="small" disabled={save.busy}>
                      {t('common.save')}
                    </button>
                  </form>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <div className="row">
        <button type="button" onClick={() => void sweep.run(true)} disabled={sweep.busy}>
          {t('privacy.dryRun')}
        </button>
        <button type="button" className="danger" onClick={() => confirm(t('privacy.confirmSweep')) && void sweep.run(false)} disabled={sweep.busy}>
          {t('privacy.sweepNow')}
        </button>
      </div>
      <ProblemNote problem={sweep.problem} />
      {watching ? (
        <div className="sweep" aria-live="polite">
          <p>
            {watching.dryRun ? t('privacy.dryRun') : t('privacy.sweepNow')} · {watching.state}
          </p>
          {watching.finishedAt ? <pre data-testid="sweep-report">{JSON.stringify(watching.report, null, 2)}</pre> : null}
        </div>
      ) : null}
      <h3>{t('privacy.sweeps')}</h3>
      <ul>
        {(sweeps.data?.items ?? []).slice(0, 10).map((item) => (
          <li key={item.id}>
            {format.time(item.startedAt)} · {item.dryRun ? t('privacy.dryRun') : t('privacy.sweepNow')} · {item.state}
          </li>
        ))}
      </ul>
    </section>
  );
}
