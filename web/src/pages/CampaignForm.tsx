import { useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { patch, post } from '../api.ts';
import { Field, Head, ProblemNote, useAction } from '../components/ui.tsx';

export type Disposition = { code: string; label: string; kind: string };
type RetryRule = { retry: boolean; afterMinutes: number };
type Window = { start: string; end: string; days?: number[] };
export type CampaignSettings = {
  id?: string;
  name: string;
  purpose: string;
  mode: string;
  jurisdiction: string | null;
  callerId: string | null;
  script: string | null;
  hours: Window[];
  retryRules: Partial<Record<string, RetryRule>>;
  maxAttempts: number;
  ringTimeoutMs: number;
  wrapUpMs: number;
  amd: boolean;
  recordCalls: boolean;
  dispositions: Disposition[];
};

const OUTCOMES = ['busy', 'no_answer', 'machine', 'failed', 'abandoned'] as const;
const KINDS = ['success', 'final', 'retry', 'callback', 'do_not_call'] as const;
const DAYS = [1, 2, 3, 4, 5, 6, 0] as const;
const DEFAULT_RETRIES: Record<(typeof OUTCOMES)[number], RetryRule> = {
  busy: { retry: true, afterMinutes: 30 },
  no_answer: { retry: true, afterMinutes: 240 },
  machine: { retry: true, afterMinutes: 480 },
  failed: { retry: false, afterMinutes: 1440 },
  abandoned: { retry: true, afterMinutes: 4320 },
};
const DEFAULT_DISPOSITIONS: Disposition[] = [
  { code: 'sale', label: 'Sale', kind: 'success' },
  { code: 'not_interested', label: 'Not interested', kind: 'final' },
  { code: 'call_again', label: 'Call again later', kind: 'retry' },
  { code: 'callback', label: 'Callback arranged', kind: 'callback' },
  { code: 'do_not_call', label: 'Do not call', kind: 'do_not_call' },
  { code: 'wrong_number', label: 'Wrong number', kind: 'final' },
];

/**
 * A campaign's settings, new or existing: mode, jurisdiction, calling window, retry rules,
 * dispositions, script. The server checks everything against the jurisdiction (a window the law
 * never allows, a ring time below its minimum) and its answer shows beside the field.
 */
export function CampaignForm({ jurisdictions, editing, onSaved }: { jurisdictions: { code: string; name: string }[]; editing?: CampaignSettings; onSaved: () => void }) {
  const { t } = useTranslation();
  const window0 = editing?.hours[0];
  const [days, setDays] = useState<number[]>(window0?.days ?? [1, 2, 3, 4, 5]);
  const [retries, setRetries] = useState<Record<string, RetryRule>>({ ...DEFAULT_RETRIES, ...(editing?.retryRules as Record<string, RetryRule> | undefined) });
  const [dispositions, setDispositions] = useState<Disposition[]>(editing?.dispositions ?? DEFAULT_DISPOSITIONS);
  const [saved, setSaved] = useState(false);
  const save = useAction(async (body: Record<string, unknown>) => {
    if (editing?.id) await patch(`/api/v1/campaigns/${editing.id}`, body);
    else await post('/api/v1/campaigns', body);
    setSaved(true);
    onSaved();
  });

  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setSaved(false);
    const form = new FormData(event.currentTarget);
    const text = (name: string) => String(form.get(name) ?? '').trim();
    const body: Record<string, unknown> = {
      name: text('name'),
      mode: text('mode'),
      jurisdiction: text('jurisdiction') || null,
      callerId: text('callerId') || null,
      script: text('script') || null,
      maxAttempts: Number(text('maxAttempts')),
      ringTimeoutMs: Number(text('ringTimeoutSeconds')) * 1000,
      wrapUpMs: Number(text('wrapUpSeconds')) * 1000,
      amd: form.get('amd') === 'on',
      recordCalls: form.get('recordCalls') === 'on',
      hours: text('start') && text('end') ? [{ start: text('start'), end: text('end'), days }] : [],
      retryRules: retries,
      dispositions,
    };
    if (!editing?.id) body.purpose = text('purpose');
    void save.run(body);
  };

  const setDisposition = (index: number, change: Partial<Disposition>) => setDispositions(dispositions.map((item, at) => (at === index ? { ...item, ...change } : item)));

  return (
    <form className="grid-form" onSubmit={submit} aria-label={editing?.id ? t('campaign.edit', { name: editing.name }) : t('admin.newCampaign')} noValidate>
      <h3>{editing?.id ? t('campaign.edit', { name: editing.name }) : t('admin.newCampaign')}</h3>
      <Field label={t('admin.name')} name="name" problem={save.problem}>
        {(attributes) => <input {...attributes} required maxLength={200} defaultValue={editing?.name ?? ''} />}
      </Field>
      {editing?.id ? null : (
        <Field label={t('admin.purpose')} name="purpose" problem={save.problem}>
          {(attributes) => (
            <select {...attributes} defaultValue="sales">
              {['sales', 'survey', 'service'].map((purpose) => (
                <option key={purpose} value={purpose}>
                  {t(`purpose.${purpose}`)}
                </option>
              ))}
            </select>
          )}
        </Field>
      )}
      <Field label={t('admin.mode')} name="mode" problem={save.problem}>
        {(attributes) => (
          <select {...attributes} defaultValue={editing?.mode ?? 'progressive'}>
            {['preview', 'progressive', 'predictive'].map((mode) => (
              <option key={mode} value={mode}>
                {t(`mode.${mode}`)}
              </option>
            ))}
          </select>
        )}
      </Field>
      <Field label={t('admin.jurisdiction')} name="jurisdiction" problem={save.problem}>
        {(attributes) => (
          <select {...attributes} defaultValue={editing?.jurisdiction ?? ''}>
            <option value="">{t('admin.noJurisdiction')}</option>
            {jurisdictions.map((item) => (
              <option key={item.code} value={item.code}>
                {item.name}
              </option>
            ))}
          </select>
        )}
      </Field>
      <Field label={t('admin.callerId')} name="callerId" problem={save.problem} hint="+4722123456">
        {(attributes) => <input {...attributes} inputMode="tel" defaultValue={editing?.callerId ?? ''} />}
      </Field>
      <Field label={t('admin.maxAttempts')} name="maxAttempts" problem={save.problem}>
        {(attributes) => <input {...attributes} type="number" defaultValue={editing?.maxAttempts ?? 3} />}
      </Field>
      <Field label={t('campaign.ringTimeout')} name="ringTimeoutMs" problem={save.problem}>
        {(attributes) => <input {...attributes} name="ringTimeoutSeconds" type="number" defaultValue={(editing?.ringTimeoutMs ?? 20_000) / 1000} />}
      </Field>
      <Field label={t('campaign.wrapUp')} name="wrapUpMs" problem={save.problem}>
        {(attributes) => <input {...attributes} name="wrapUpSeconds" type="number" defaultValue={(editing?.wrapUpMs ?? 30_000) / 1000} />}
      </Field>
      <Field label={t('admin.windowStart')} name="hours" problem={save.problem}>
        {(attributes) => <input {...attributes} name="start" type="time" defaultValue={window0?.start ?? '09:00'} />}
      </Field>
      <Field label={t('admin.windowEnd')} name="end" problem={save.problem}>
        {(attributes) => <input {...attributes} type="time" defaultValue={window0?.end ?? '20:00'} />}
      </Field>
      <fieldset className="days">
        <legend>{t('campaign.days')}</legend>
        {DAYS.map((day) => (
          <label key={day} className="check">
            <input type="checkbox" checked={days.includes(day)} onChange={(event) => setDays(event.target.checked ? [...days, day].sort() : days.filter((value) => value !== day))} />
            {t(`day.${day}`)}
          </label>
        ))}
      </fieldset>
      <label className="check">
        <input type="checkbox" name="amd" defaultChecked={editing?.amd ?? true} /> {t('admin.amd')}
      </label>
      <label className="check">
        <input type="checkbox" name="recordCalls" defaultChecked={editing?.recordCalls ?? false} /> {t('admin.recordCalls')}
      </label>
      <div className="wide">
        <Field label={t('agent.script')} name="script" problem={save.problem}>
          {(attributes) => <textarea {...attributes} rows={4} maxLength={20000} defaultValue={editing?.script ?? ''} />}
        </Field>
      </div>
      <fieldset className="wide">
        <legend>{t('campaign.retries')}</legend>
        <table>
          <Head cells={[t('campaign.outcome'), t('campaign.retry'), t('campaign.afterMinutes')]} />
          <tbody>
            {OUTCOMES.map((outcome) => (
              <tr key={outcome}>
                <td>{t(`callOutcome.${outcome}`)}</td>
                <td>
                  <input type="checkbox" aria-label={t('campaign.retryAfter', { outcome: t(`callOutcome.${outcome}`) })} checked={retries[outcome]?.retry ?? false} onChange={(event) => setRetries({ ...retries, [outcome]: { ...(retries[outcome] ?? DEFAULT_RETRIES[outcome]), retry: event.target.checked } })} />
                </td>
                <td>
                  <input
                    type="number"
                    aria-label={t('campaign.minutesAfter', { outcome: t(`callOutcome.${outcome}`) })}
                    value={retries[outcome]?.afterMinutes ?? ''}
                    onChange={(event) => setRetries({ ...retries, [outcome]: { ...(retries[outcome] ?? DEFAULT_RETRIES[outcome]), afterMinutes: Number(event.target.value) } })}
                  />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {save.problem?.fieldMessage('retryRules') ? <small className="field-error">{save.problem.fieldMessage('retryRules')}</small> : null}
      </fieldset>
      <fieldset className="wide">
        <legend>{t('campaign.dispositions')}</legend>
        <table>
          <Head cells={[t('campaign.code'), t('campaign.label'), t('campaign.kind'), t('common.actions')]} />
          <tbody>
            {dispositions.map((item, index) => (
              <tr key={index}>
                <td>
                  <input aria-label={t('campaign.codeOf', { index: index + 1 })} value={item.code} onChange={(event) => setDisposition(index, { code: event.target.value })} />
                </td>
                <td>
                  <input aria-label={t('campaign.labelOf', { index: index + 1 })} value={item.label} onChange={(event) => setDisposition(index, { label: event.target.value })} />
                </td>
                <td>
                  <select aria-label={t('campaign.kindOf', { index: index + 1 })} value={item.kind} onChange={(event) => setDisposition(index, { kind: event.target.value })}>
                    {KINDS.map((kind) => (
                      <option key={kind} value={kind}>
                        {t(`dispositionKind.${kind}`)}
                      </option>
                    ))}
                  </select>
                </td>
                <td>
                  <button type="button" className="small" onClick={() => setDispositions(dispositions.filter((_item, at) => at !== index))}>
                    {t('account.remove')}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <button type="button" onClick={() => setDispositions([...dispositions, { code: '', label: '', kind: 'final' }])}>
          {t('campaign.addDisposition')}
        </button>
        {save.problem?.fieldMessage('dispositions') ? <small className="field-error">{save.problem.fieldMessage('dispositions')}</small> : null}
      </fieldset>
      <button type="submit" className="primary" disabled={save.busy}>
        {editing?.id ? t('common.save') : t('admin.createCampaign')}
      </button>
      {saved ? <p role="status">{t('common.saved')}</p> : null}
      <ProblemNote problem={save.problem} />
    </form>
  );
}
