import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { ApiProblem, post } from '../api.ts';
import { ProblemNote, useAction, useFormat, useLoad } from '../components/ui.tsx';

type Owed = { id: string; kind: 'policy' | 'training'; title: string; version: string; url: string | null; content: string | null; sha256: string; acknowledgedAt: string | null; due: boolean };

/**
 * The security policy and training the person must acknowledge before anything else: each
 * document is shown (its text, or a link to it), and acknowledged one by one — for the version
 * shown (its digest goes with the acknowledgement, so a document changed meanwhile is not
 * acknowledged unseen).
 */
export function Attestation({ onDone, titled = true }: { onDone: () => void; titled?: boolean }) {
  const { t } = useTranslation();
  const format = useFormat();
  const documents = useLoad<{ items: Owed[] }>('/api/v1/me/security-documents');
  const [read, setRead] = useState<Record<string, boolean>>({});
  const acknowledge = useAction(async (document: Owed) => {
    try {
      await post(`/api/v1/me/security-documents/${document.id}/acknowledge`, { sha256: document.sha256 });
    } catch (error) {
      // A newer version was published while it was being read: show that one.
      if (error instanceof ApiProblem && error.code === 'invalid_transition') documents.reload();
      throw error;
    }
    const left = (documents.data?.items ?? []).filter((item) => item.due && item.id !== document.id);
    if (left.length === 0) onDone();
    else documents.reload();
  });
  const owed = (documents.data?.items ?? []).filter((item) => item.due);
  return (
    <section className={titled ? 'panel' : 'stack'} aria-label={t('attest.title')}>
      {titled ? <h2>{t('attest.title')}</h2> : null}
      <p>{t('attest.explain')}</p>
      <ProblemNote problem={documents.problem ?? acknowledge.problem} />
      {owed.map((document) => (
        <article key={document.id} className="stack" data-testid="owed-document">
          <h3>
            {t(`attest.kind.${document.kind}`)}: {document.title} <span className="hint">{t('attest.version', { version: document.version })}</span>
          </h3>
          {document.acknowledgedAt ? <p className="hint">{t('attest.lastTime', { when: format.time(document.acknowledgedAt) })}</p> : null}
          {document.content ? <div className="document" tabIndex={0}>{document.content}</div> : null}
          {document.url ? (
            <p>
              <a href={document.url} target="_blank" rel="noreferrer noopener">
                {t('attest.open')}
              </a>
            </p>
          ) : null}
          <label>
            <input type="checkbox" checked={Boolean(read[document.id])} onChange={(event) => setRead({ ...read, [document.id]: event.target.checked })} /> {t(`attest.confirm.${document.kind}`)}
          </label>
          <div className="row">
            <button type="button" className="primary" disabled={!read[document.id] || acknowledge.busy} onClick={() => void acknowledge.run(document)}>
              {t('attest.acknowledge')}
            </button>
          </div>
        </article>
      ))}
      {documents.data && owed.length === 0 ? (
        <button type="button" className="primary" onClick={onDone}>
          {t('attest.continue')}
        </button>
      ) : null}
    </section>
  );
}
