import { useEffect, useState } from 'react';
import { useTranslation } from 'react-i18next';
import Papa from 'papaparse';
import { api, get, patch, post } from '../api.ts';
import { Field, Head, ProblemNote, useAction, useFormat, useLoad } from '../components/ui.tsx';
import { useSession } from '../App.tsx';

/** Administration, lists tab: contact lists, CSV import with column mapping, progress and reject file. */

type Campaign = { id: string; name: string };
type ContactList = { id: string; name: string; defaultRegion: string; campaignId: string | null; members: number };
type Import = { id: string; state: string; fileRows: number; rowsDone: number; created: number; linked: number; rejected: number; suppressed: number; rowsPerSecond?: number };
const TARGETS = ['ignore', 'externalId', 'name', 'email', 'phone', 'phone:mobile', 'phone:home', 'phone:work', 'birthDate', 'notes', 'timeZone', 'address.line1', 'address.line2', 'address.postalCode', 'address.city', 'address.region', 'address.country'];

/** A guess of what a column holds, from its header; the person confirms or changes every one. */
function guessTarget(header: string): string {
  const name = header.toLowerCase().replace(/[^a-zæøå0-9]/g, '');
  if (/^(phone|telefon|tlf|mobil|mobile|number|nummer)/.test(name)) return 'phone';
  if (/^(email|epost|mail)/.test(name)) return 'email';
  if (/^(name|navn|fullname)/.test(name)) return 'name';
  if (/^(id|externalid|kundenr|customerid)/.test(name)) return 'externalId';
  if (/^(city|by|poststed)/.test(name)) return 'address.city';
  if (/^(postalcode|postnr|zip)/.test(name)) return 'address.postalCode';
  return 'ignore';
}

export function Lists() {
  const { t } = useTranslation();
  const { can } = useSession();
  const format = useFormat();
  const lists = useLoad<{ items: ContactList[] }>('/api/v1/lists');
  const campaigns = useLoad<{ items: Campaign[] }>('/api/v1/campaigns');
  const [file, setFile] = useState<File>();
  const [headers, setHeaders] = useState<string[]>([]);
  const [delimiter, setDelimiter] = useState<',' | ';'>(',');
  const [mapping, setMapping] = useState<Record<string, string>>({});
  const [listId, setListId] = useState('');
  const [job, setJob] = useState<Import>();
  const [readProblem, setReadProblem] = useState<string>();
  // The lawful basis the organisation holds for everyone in the file (none: record nothing).
  const [basis, setBasis] = useState<'' | 'consent' | 'legitimate_interest' | 'contract'>('');
  const [purpose, setPurpose] = useState<'sales' | 'survey' | 'service'>('sales');
  const [basisSource, setBasisSource] = useState('');

  const createList = useAction(async (body: Record<string, unknown>) => {
    await post('/api/v1/lists', body);
    lists.reload();
  });
  const assign = useAction(async (list: ContactList, campaignId: string) => {
    await patch(`/api/v1/lists/${list.id}`, { campaignId: campaignId || null });
    lists.reload();
  });

  const choose = (chosen: File | undefined) => {
    setFile(chosen);
    setHeaders([]);
    setReadProblem(undefined);
    if (!chosen) return;
    // Only the header row is read here; the file itself goes to the server as it is.
    Papa.parse<string[]>(chosen, {
      preview: 1,
      complete: (result) => {
        const row = result.data[0] ?? [];
        if (row.length === 0) {
          setReadProblem(t('import.noHeader'));
          return;
        }
        setDelimiter(result.meta.delimiter === ';' ? ';' : ',');
        setHeaders(row);
        setMapping(Object.fromEntries(row.map((header) => [header, guessTarget(header)])));
      },
      error: () => setReadProblem(t('import.unreadable')),
    });
  };

  const start = useAction(async () => {
    if (!file) return;
    const lawfulBasis = basis === '' ? undefined : { purpose, basis, source: basisSource };
    const created = await post<Import>('/api/v1/contact-imports', { listId, mapping, delimiter, ...(lawfulBasis ? { lawfulBasis } : {}) });
    setJob(created);
    await api('PUT', `/api/v1/contact-imports/${created.id}/file`, { raw: file, contentType: 'text/csv' });
    setJob(await get<Import>(`/api/v1/contact-imports/${created.id}`));
  });

  useEffect(() => {
    if (!job || ['done', 'failed', 'cancelled'].includes(job.state)) return;
    const timer = setTimeout(() => void get<Import>(`/api/v1/contact-imports/${job.id}`).then(setJob), 1000);
    return () => clearTimeout(timer);
  }, [job]);

  useEffect(() => {
    if (job?.state === 'done') lists.reload();
  }, [job?.state, lists.reload]);

  const manage = can('contacts:manage');
  const progress = job && job.fileRows > 0 ? job.rowsDone / job.fileRows : 0;
  return (
    <section className="panel">
      <h2>{t('admin.lists')}</h2>
      <ProblemNote problem={lists.problem ?? assign.problem} />
      <table>
        <Head cells={[t('admin.name'), t('admin.region'), t('admin.members'), t('agent.campaign')]} />
        <tbody>
          {(lists.data?.items ?? []).map((list) => (
            <tr key={list.id}>
              <td>{list.name}</td>
              <td>{list.defaultRegion}</td>
              <td data-testid={`members-${list.name}`}>{format.number(list.members)}</td>
              <td>
                <label className="visually-hidden" htmlFor={`assign-${list.id}`}>
                  {t('admin.assignTo', { list: list.name })}
                </label>
                <select id={`assign-${list.id}`} value={list.campaignId ?? ''} onChange={(event) => void assign.run(list, event.target.value)} disabled={!can('campaigns:manage')}>
                  <option value="">—</option>
                  {(campaigns.data?.items ?? []).map((campaign) => (
                    <option key={campaign.id} value={campaign.id}>
                      {campaign.name}
                    </option>
                  ))}
                </select>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {manage ? (
        <>
          <form
            className="inline-form"
            aria-label={t('admin.newList')}
            onSubmit={(event) => {
              event.preventDefault();
              const form = new FormData(event.currentTarget);
              void createList.run({ name: String(form.get('name')), defaultRegion: String(form.get('defaultRegion')).toUpperCase() });
            }}
          >
            <h3>{t('admin.newList')}</h3>
            <Field label={t('admin.name')} name="name" problem={createList.problem}>
              {(attributes) => <input {...attributes} required />}
            </Field>
            <Field label={t('admin.region')} name="defaultRegion" problem={createList.problem}>
              {(attributes) => <input {...attributes} required defaultValue="NO" maxLength={2} />}
            </Field>
            <button type="submit" className="primary" disabled={createList.busy}>
              {t('admin.createList')}
            </button>
            <ProblemNote problem={createList.problem} />
          </form>

          <form
            className="stack import"
            aria-label={t('import.title')}
            onSubmit={(event) => {
              event.preventDefault();
              void start.run();
            }}
          >
            <h3>{t('import.title')}</h3>
            <div className="row wrap">
              <Field label={t('import.list')} name="listId" problem={start.problem}>
                {(attributes) => (
                  <select {...attributes} value={listId} onChange={(event) => setListId(event.target.value)} required>
                    <option value="">{t('import.chooseList')}</option>
                    {(lists.data?.items ?? []).map((list) => (
                      <option key={list.id} value={list.id}>
                        {list.name}
                      </option>
                    ))}
                  </select>
                )}
              </Field>
              <Field label={t('import.file')} name="file" problem={start.problem}>
                {(attributes) => <input {...attributes} type="file" accept=".csv,text/csv" onChange={(event) => choose(event.target.files?.[0])} />}
              </Field>
            </div>
            {readProblem ? <p className="problem" role="alert">{readProblem}</p> : null}
            {headers.length > 0 ? (
              <table className="mapping">
                <caption>{t('import.mapping')}</caption>
                <Head cells={[t('import.column'), t('import.holds')]} />
                <tbody>
                  {headers.map((header, index) => (
                    <tr key={`${header}-${index}`}>
                      <td>{header}</td>
                      <td>
                        <label className="visually-hidden" htmlFor={`map-${index}`}>
                          {t('import.holdsFor', { column: header })}
                        </label>
                        <select id={`map-${index}`} value={mapping[header] ?? 'ignore'} onChange={(event) => setMapping({ ...mapping, [header]: event.target.value })}>
                          {TARGETS.map((target) => (
                            <option key={target} value={target}>
                              {t(`target.${target}`, { defaultValue: target })}
                            </option>
                          ))}
                        </select>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            ) : null}
            <fieldset className="row wrap">
              <legend>{t('import.lawfulBasis')}</legend>
              <Field label={t('import.basis')} name="lawfulBasis/basis" problem={start.problem} hint={t('import.basisHint')}>
                {(attributes) => (
                  <select {...attributes} value={basis} onChange={(event) => setBasis(event.target.value as typeof basis)}>
                    <option value="">{t('import.noBasis')}</option>
                    {(['consent', 'legitimate_interest', 'contract'] as const).map((code) => (
                      <option key={code} value={code}>
                        {t(`basis.${code}`)}
                      </option>
                    ))}
                  </select>
                )}
              </Field>
              {basis === '' ? null : (
                <>
                  <Field label={t('admin.purpose')} name="lawfulBasis/purpose" problem={start.problem}>
                    {(attributes) => (
                      <select {...attributes} value={purpose} onChange={(event) => setPurpose(event.target.value as typeof purpose)}>
                        {(['sales', 'survey', 'service'] as const).map((code) => (
                          <option key={code} value={code}>
                            {t(`purpose.${code}`)}
                          </option>
                        ))}
                      </select>
                    )}
                  </Field>
                  <Field label={t('import.basisSource')} name="lawfulBasis/source" problem={start.problem}>
                    {(attributes) => <input {...attributes} value={basisSource} maxLength={200} onChange={(event) => setBasisSource(event.target.value)} />}
                  </Field>
                </>
              )}
            </fieldset>
            <button type="submit" className="primary" disabled={start.busy || !file || headers.length === 0 || listId === ''}>
              {t('import.start')}
            </button>
            <ProblemNote problem={start.problem} />
          </form>
          {job ? (
            <div className="import-progress" aria-live="polite">
              <progress max={1} value={progress} aria-label={t('import.progress')} />
              <p data-testid="import-status">
                {t(`importState.${job.state}`)} · {t('import.counts', { done: job.rowsDone, total: job.fileRows, created: job.created, linked: job.linked, rejected: job.rejected, suppressed: job.suppressed })}
              </p>
              {job.rejected > 0 ? (
                <a className="button" href={`/api/v1/contact-imports/${job.id}/rejects`} download>
                  {t('import.rejects')}
                </a>
              ) : null}
            </div>
          ) : null}
        </>
      ) : null}
    </section>
  );
}
