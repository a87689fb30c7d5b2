import { useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { put } from '../api.ts';
import { Field, ProblemNote, useAction, useLoad } from '../components/ui.tsx';
import { useSession } from '../App.tsx';

/** Administration, security policy tab. */

type Policy = { mfaRequiredForAll: boolean; sessionIdleMinutes: number; sessionAbsoluteHours: number; ipAllowList: string[]; revealsPerHour: number; lookupsPerHour: number };

export function PolicyForm() {
  const { t } = useTranslation();
  const { can } = useSession();
  const policy = useLoad<Policy>('/api/v1/security-policy');
  const [saved, setSaved] = useState(false);
  const save = useAction(async (body: Policy) => {
    await put('/api/v1/security-policy', body);
    setSaved(true);
    policy.reload();
  });
  if (policy.problem) return <ProblemNote problem={policy.problem} />;
  if (!policy.data) return <p className="loading">{t('common.loading')}</p>;
  const current = policy.data;
  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setSaved(false);
    const form = new FormData(event.currentTarget);
    void save.run({
      mfaRequiredForAll: form.get('mfaRequiredForAll') === 'on',
      sessionIdleMinutes: Number(form.get('sessionIdleMinutes')),
      sessionAbsoluteHours: Number(form.get('sessionAbsoluteHours')),
      ipAllowList: String(form.get('ipAllowList')).split(/[\s,]+/).filter(Boolean),
      revealsPerHour: Number(form.get('revealsPerHour')),
      lookupsPerHour: Number(form.get('lookupsPerHour')),
    });
  };
  const editable = can('security:manage');
  return (
    <form className="panel grid-form" onSubmit={submit} aria-label={t('admin.tab.policy')} noValidate>
      <h2>{t('admin.tab.policy')}</h2>
      <label className="check">
        <input type="checkbox" name="mfaRequiredForAll" defaultChecked={current.mfaRequiredForAll} disabled={!editable} /> {t('policy.mfaForAll')}
      </label>
      <Field label={t('policy.idle')} name="sessionIdleMinutes" problem={save.problem}>
        {(attributes) => <input {...attributes} type="number" min={5} max={720} defaultValue={current.sessionIdleMinutes} disabled={!editable} />}
      </Field>
      <Field label={t('policy.absolute')} name="sessionAbsoluteHours" problem={save.problem}>
        {(attributes) => <input {...attributes} type="number" min={1} max={72} defaultValue={current.sessionAbsoluteHours} disabled={!editable} />}
      </Field>
      <Field label={t('policy.reveals')} name="revealsPerHour" problem={save.problem}>
        {(attributes) => <input {...attributes} type="number" min={0} defaultValue={current.revealsPerHour} disabled={!editable} />}
      </Field>
      <Field label={t('policy.lookups')} name="lookupsPerHour" problem={save.problem}>
        {(attributes) => <input {...attributes} type="number" min={0} defaultValue={current.lookupsPerHour} disabled={!editable} />}
      </Field>
      <Field label={t('policy.ipAllowList')} name="ipAllowList" problem={save.problem} hint={t('policy.ipHint')}>
        {(attributes) => <textarea {...attributes} rows={3} defaultValue={current.ipAllowList.join('\n')} disabled={!editable} />}
      </Field>
      {editable ? (
        <button type="submit" className="primary" disabled={save.busy}>
          {t('common.save')}
        </button>
      ) : null}
      {saved ? <p role="status">{t('common.saved')}</p> : null}
      <ProblemNote problem={save.problem} />
    </form>
  );
}
