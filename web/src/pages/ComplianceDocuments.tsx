import { useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { api, post } from '../api.ts';
import { Badge, Field, Head, ProblemNote, useAction, useLoad } from '../components/ui.tsx';
import { useSession } from '../App.tsx';
import type { Control } from './Compliance.tsx';

export type Document = {
  id: string;
  kind: 'control_evidence' | 'certification' | 'audit_report';
  controlId: string | null;
  title: string;
  issuer: string | null;
  url: string | null;
  file: { name: string | null; mediaType: string; bytes: number; sha256: string } | null;
  evidenceDate: string;
  expiresOn: string;
  current: boolean;
  sharedInReport: boolean;
  addedAt: string;
  withdrawnAt: string | null;
};

const ACCEPTED = ['application/pdf', 'image/png', 'image/jpeg', 'text/plain'];
const MAX_FILE_BYTES = 10 * 1024 * 1024;

/** The compliance center's documents: evidence for organisational controls, certifications and audit reports. */
export function Documents() {
  const { t } = useTranslation();
  const { can } = useSession();
  const documents = useLoad<{ items: Document[] }>('/api/v1/compliance/documents');
  const controls = useLoad<{ controls: Control[] }>('/api/v1/compliance/controls');
  const [kind, setKind] = useState<Document['kind']>('control_evidence');
  const [formKey, setFormKey] = useState(0);
  const [fileProblem, setFileProblem] = useState<string>();
  const add = useAction(async (body: Record<string, unknown>, file: File | undefined) => {
    const created = await post<Document>('/api/v1/compliance/documents', body);
    try {
      if (file) await api('PUT', `/api/v1/compliance/documents/${created.id}/file`, { raw: file, contentType: file.type, fileName: file.name });
    } finally {
      // Added even when its file was refused: the list shows it (without a file, not current) and it can be withdrawn.
      documents.reload();
    }
    setFormKey((value) => value + 1);
  });
  const change = useAction(async (url: string, body?: unknown) => {
    await post(url, body);
    documents.reload();
  });
  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const text = (name: string) => String(form.get(name) ?? '').trim();
    const file = form.get('file');
    // The file is checked before anything is added: its type and size, as the server will.
    if (file instanceof File && file.size > 0 && (!ACCEPTED.includes(file.type) || file.size > MAX_FILE_BYTES)) {
      setFileProblem(t('compliance.fileRefused'));
      return;
    }
    setFileProblem(undefined);
    void add.run(
      {
        kind,
        ...(kind === 'control_evidence' ? { controlId: text('controlId') } : { issuer: text('issuer') }),
        title: text('title'),
        ...(text('url') ? { url: text('url') } : {}),
        evidenceDate: text('evidenceDate'),
        expiresOn: text('expiresOn'),
        sharedInReport: kind !== 'control_evidence' && form.get('shared') === 'on',
      },
      file instanceof File && file.size > 0 ? file : undefined,
    );
  };
  const organisational = (controls.data?.controls ?? []).filter((control) => control.kind === 'organisational');
  return (
    <section className="panel">
      <h2>{t('compliance.documents')}</h2>
      <ProblemNote problem={documents.problem ?? change.problem} />
      <table data-testid="documents-table">
        <Head cells={[t('compliance.kind'), t('compliance.titleField'), t('compliance.evidenceDate'), t('compliance.expiresOn'), t('compliance.status'), '']} />
        <tbody>
          {(documents.data?.items ?? []).map((document) => (
            <tr key={document.id}>
              <td>
                {t(`compliance.kindName.${document.kind}`)}
                {document.controlId ? <code> {document.controlId}</code> : null}
              </td>
              <td>
                {document.title}
                {document.issuer ? <span className="hint"> — {document.issuer}</span> : null}
                {document.file ? <div className="hint">SHA-256 {document.file.sha256.slice(0, 16)}…</div> : null}
              </td>
              <td>{document.evidenceDate}</td>
              <td>{document.expiresOn}</td>
              <td>
                <Badge tone={document.current ? 'ok' : 'warn'}>{document.current ? t('compliance.current') : t('compliance.notCurrent')}</Badge>
                {document.sharedInReport ? <Badge tone="info">{t('compliance.shared')}</Badge> : null}
              </td>
              <td className="row">
                {document.file ? <a href={`/api/v1/compliance/documents/${document.id}/file`}>{t('compliance.download')}</a> : null}
                {document.url ? (
                  <a href={document.url} rel="noopener noreferrer" target="_blank">
                    {t('compliance.link')}
                  </a>
                ) : null}
                {can('security:manage') && document.kind !== 'control_evidence' ? (
                  <button type="button" onClick={() => void change.run(`/api/v1/compliance/documents/${document.id}/share`, { shared: !document.sharedInReport })}>
                    {document.sharedInReport ? t('compliance.unshare') : t('compliance.share')}
                  </button>
                ) : null}
                {can('security:manage') ? (
                  <button type="button" className="danger" onClick={() => confirm(t('compliance.confirmWithdraw')) && void change.run(`/api/v1/compliance/documents/${document.id}/withdraw`)}>
                    {t('compliance.withdraw')}
                  </button>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {documents.data?.items.length === 0 ? <p className="hint">{t('compliance.noDocuments')}</p> : null}
      {can('security:manage') ? (
        <form key={formKey} className="grid-form" onSubmit={submit} aria-label={t('compliance.add')}>
          <Field label={t('compliance.kind')} name="kind" problem={add.problem}>
            {(attributes) => (
              <select {...attributes} value={kind} onChange={(event) => setKind(event.target.value as Document['kind'])}>
                {(['control_evidence', 'certification', 'audit_report'] as const).map((value) => (
                  <option key={value} value={value}>
                    {t(`compliance.kindName.${value}`)}
                  </option>
                ))}
              </select>
            )}
          </Field>
          {kind === 'control_evidence' ? (
            <Field label={t('compliance.control')} name="controlId" problem={add.problem}>
              {(attributes) => (
                <select {...attributes} required>
                  {organisational.map((control) => (
                    <option key={control.id} value={control.id}>
                      {control.id} {control.title}
                    </option>
                  ))}
                </select>
              )}
            </Field>
          ) : (
            <Field label={t('compliance.issuer')} name="issuer" problem={add.problem}>
              {(attributes) => <input {...attributes} required maxLength={200} />}
            </Field>
          )}
          <Field label={t('compliance.titleField')} name="title" problem={add.problem}>
            {(attributes) => <input {...attributes} required maxLength={200} />}
          </Field>
          <Field label={t('compliance.link')} name="url" problem={add.problem}>
            {(attributes) => <input {...attributes} type="url" pattern="https://.*" maxLength={2000} />}
          </Field>
          <Field label={t('compliance.file')} name="file" problem={add.problem}>
            {(attributes) => <input {...attributes} type="file" accept={ACCEPTED.join(',')} />}
          </Field>
          {fileProblem ? (
            <p className="problem" role="alert">
              {fileProblem}
            </p>
          ) : null}
          <Field label={t('compliance.evidenceDate')} name="evidenceDate" problem={add.problem}>
            {(attributes) => <input {...attributes} type="date" required />}
          </Field>
          <Field label={t('compliance.expiresOn')} name="expiresOn" problem={add.problem}>
            {(attributes) => <input {...attributes} type="date" required />}
          </Field>
          {kind !== 'control_evidence' ? (
            <label className="check">
              <input type="checkbox" name="shared" /> {t('compliance.shared')}
            </label>
          ) : null}
          <button type="submit" className="primary" disabled={add.busy}>
            {t('compliance.add')}
          </button>
          <ProblemNote problem={add.problem} />
        </form>
      ) : null}
    </section>
  );
}

