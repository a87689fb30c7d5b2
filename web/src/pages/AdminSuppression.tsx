import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api, post } from '../api.ts';
import { Field, Head, ProblemNote, useAction, useFormat, useLoad } from '../components/ui.tsx';

/** Administration, suppression tab: do-not-call entries and national registry files. */

type Suppression = { id: string; channel: string; masked: string; scope: string; reason: string; createdAt: string };
type Registry = { id: string; format: string; name: string; entries: number; rejected: number; importedAt: string };
const REGISTRY_FORMATS = ['no_reservasjon', 'uk_tps', 'us_dnc', 'e164_list'] as const;

export function Suppressions() {
  const { t } = useTranslation();
  const format = useFormat();
  const list = useLoad<{ items: Suppression[] }>('/api/v1/suppressions');
  const registries = useLoad<{ items: Registry[] }>('/api/v1/suppression-registries');
  const [registryFile, setRegistryFile] = useState<File>();
  const load = useAction(async (registryFormat: string) => {
    if (!registryFile) return;
    await api('PUT', `/api/v1/suppression-registries/${registryFormat}`, { raw: registryFile, contentType: 'text/plain' });
    registries.reload();
  });
  const add = useAction(async (body: Record<string, unknown>) => {
    await post('/api/v1/suppressions', body);
    list.reload();
  });
  return (
    <section className="panel">
      <h2>{t('admin.suppressions')}</h2>
      <ProblemNote problem={list.problem} />
      <table>
        <Head cells={[t('suppression.value'), t('suppression.scope'), t('suppression.reason'), t('common.when')]} />
        <tbody>
          {(list.data?.items ?? []).map((item) => (
            <tr key={item.id}>
              <td>{item.masked}</td>
              <td>{item.scope}</td>
              <td>{item.reason}</td>
              <td>{format.time(item.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        className="inline-form"
        aria-label={t('suppression.add')}
        onSubmit={(event) => {
          event.preventDefault();
          const form = new FormData(event.currentTarget);
          const value = String(form.get('value')).trim();
          void add.run({ ...(value.includes('@') ? { email: value } : { phone: value, region: 'NO' }), reason: String(form.get('reason')) });
        }}
      >
        <h3>{t('suppression.add')}</h3>
        <Field label={t('suppression.value')} name="phone" problem={add.problem} hint={t('suppression.valueHint')}>
          {(attributes) => <input {...attributes} name="value" required />}
        </Field>
        <Field label={t('suppression.reason')} name="reason" problem={add.problem}>
          {(attributes) => (
            <select {...attributes} defaultValue="request">
              {['request', 'objection', 'withdrawal', 'complaint', 'other'].map((reason) => (
                <option key={reason} value={reason}>
                  {t(`suppressionReason.${reason}`)}
                </option>
              ))}
            </select>
          )}
        </Field>
        <button type="submit" className="primary" disabled={add.busy}>
          {t('suppression.add')}
        </button>
        <ProblemNote problem={add.problem} />
      </form>
      <h3>{t('suppression.registries')}</h3>
      <table>
        <Head cells={[t('suppression.registry'), t('suppression.entries'), t('suppression.imported')]} />
        <tbody>
          {(registries.data?.items ?? []).map((registry) => (
            <tr key={registry.id}>
              <td>{registry.name}</td>
              <td data-testid={`registry-${registry.format}`}>{format.number(registry.entries)}</td>
              <td>{format.time(registry.importedAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        className="inline-form"
        aria-label={t('suppression.loadRegistry')}
        onSubmit={(event) => {
          event.preventDefault();
          void load.run(String(new FormData(event.currentTarget).get('format')));
        }}
      >
        <Field label={t('suppression.registry')} name="format" problem={load.problem}>
          {(attributes) => (
            <select {...attributes} defaultValue="no_reservasjon">
              {REGISTRY_FORMATS.map((item) => (
                <option key={item} value={item}>
                  {t(`registry.${item}`)}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label={t('suppression.registryFile')} name="file" problem={load.problem}>
          {(attributes) => <input {...attributes} type="file" accept=".txt,.csv,text/plain" onChange={(event) => setRegistryFile(event.target.files?.[0])} />}
        </Field>
        <button type="submit" className="primary" disabled={load.busy || !registryFile}>
          {t('suppression.loadRegistry')}
        </button>
        <ProblemNote problem={load.problem} />
      </form>
    </section>
  );
}
