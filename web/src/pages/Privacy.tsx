import { useTranslation } from 'react-i18next';
import { post } from '../api.ts';
import { Field, Head, ProblemNote, useAction, useFormat, useLoad } from '../components/ui.tsx';
import { TabbedPage } from '../components/TabbedPage.tsx';
import { Requests } from './PrivacyRequests.tsx';
import { LegalHolds, Retention } from './PrivacyRetention.tsx';
import { Breaches } from './PrivacyBreaches.tsx';

type Processor = { id: string; name: string; service: string; location: string; transferSafeguard: string | null; dpaExpiresOn: string | null };
/** The privacy center: data-subject cases, retention with dry-run, records of processing, processors, breaches. */
export default function Privacy() {
  return (
    <TabbedPage
      area="privacy"
      panels={{
        requests: () => <Requests />,
        retention: () => (
          <>
            <Retention />
            <LegalHolds />
          </>
        ),
        records: () => <Records />,
        processors: () => <Processors />,
        breaches: () => <Breaches />,
      }}
    />
  );
}

function Records() {
  const { t } = useTranslation();
  return (
    <section className="panel">
      <h2>{t('privacy.records')}</h2>
      <p>{t('privacy.recordsExplain')}</p>
      <p className="row">
        <a className="button" href="/api/v1/privacy/records-of-processing?format=pdf">
          {t('privacy.downloadPdf')}
        </a>
        <a className="button" href="/api/v1/privacy/records-of-processing?format=json">
          {t('privacy.downloadJson')}
        </a>
      </p>
    </section>
  );
}

function Processors() {
  const { t } = useTranslation();
  const format = useFormat();
  const list = useLoad<{ items: Processor[] }>('/api/v1/privacy/processors');
  const add = useAction(async (body: Record<string, unknown>) => {
    await post('/api/v1/privacy/processors', body);
    list.reload();
  });
  return (
    <section className="panel">
      <h2>{t('privacy.processors')}</h2>
      <ProblemNote problem={list.problem} />
      <table>
        <Head cells={[t('admin.name'), t('privacy.service'), t('privacy.location'), t('privacy.dpaExpires')]} />
        <tbody>
          {(list.data?.items ?? []).map((processor) => (
            <tr key={processor.id}>
              <td>{processor.name}</td>
              <td>{processor.service}</td>
              <td>{processor.location}</td>
              <td>{format.date(processor.dpaExpiresOn)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        className="inline-form"
        aria-label={t('privacy.addProcessor')}
        onSubmit={(event) => {
          event.preventDefault();
          const form = new FormData(event.currentTarget);
          void add.run({ name: String(form.get('name')), service: String(form.get('service')), location: String(form.get('location')).toUpperCase() });
        }}
      >
        <h3>{t('privacy.addProcessor')}</h3>
        <Field label={t('admin.name')} name="name" problem={add.problem}>
          {(attributes) => <input {...attributes} required />}
        </Field>
        <Field label={t('privacy.service')} name="service" problem={add.problem}>
          {(attributes) => <input {...attributes} required />}
        </Field>
        <Field label={t('privacy.location')} name="location" problem={add.problem} hint="NO, SE, US …">
          {(attributes) => <input {...attributes} required maxLength={2} />}
        </Field>
        <button type="submit" className="primary" disabled={add.busy}>
          {t('privacy.addProcessor')}
        </button>
        <ProblemNote problem={add.problem} />
      </form>
    </section>
  );
}
