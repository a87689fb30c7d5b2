import { useTranslation } from 'react-i18next';
import { Head, useFormat } from './ui.tsx';

export type HistoryItem = { attemptId: string; at: string; outcome: string | null; disposition: string | null; notes: string | null };

/** This contact's earlier calls, newest first: when, the result, the outcome filed and its notes. */
export function ContactHistory({ items }: { items: HistoryItem[] }) {
  const { t } = useTranslation();
  const format = useFormat();
  return (
    <>
      <h3>{t('agent.history')}</h3>
      {items.length === 0 ? (
        <p className="hint">{t('agent.noHistory')}</p>
      ) : (
        <table>
          <Head cells={[t('common.when'), t('agent.outcome'), t('agent.disposition'), t('agent.notes')]} />
          <tbody>
            {items.map((item) => (
              <tr key={item.attemptId}>
                <td>{format.time(item.at)}</td>
                <td>{item.outcome ?? '—'}</td>
                <td>{item.disposition ?? '—'}</td>
                <td>{item.notes ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
