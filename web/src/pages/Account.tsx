import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { startRegistration } from '@simplewebauthn/browser';
import { del, post } from '../api.ts';
import { ProblemNote, useAction, useFormat, useLoad } from '../components/ui.tsx';
import { useSession } from '../App.tsx';
import { SessionTable } from './Security.tsx';

type SessionRow = { id: string; current: boolean; createdAt: string; lastSeenAt: string; expiresAt: string; methods: string[]; sourceIp: string | null; userAgent: string | null };
type Passkey = { id: string; name: string; createdAt: string; lastUsedAt: string | null; backedUp: boolean };

/** The person's own account: signed-in sessions (end any of them), passkeys, recovery codes. */
export default function Account() {
  const { t } = useTranslation();
  const format = useFormat();
  const { session } = useSession();
  const sessions = useLoad<{ items: SessionRow[] }>('/api/v1/auth/sessions');
  const passkeys = useLoad<{ items: Passkey[] }>('/api/v1/auth/passkeys');
  const [codes, setCodes] = useState<string[]>();
  const end = useAction(async (id: string) => {
    await del(`/api/v1/auth/sessions/${id}`);
    sessions.reload();
  });
  const addPasskey = useAction(async () => {
    const options = await post<Record<string, unknown>>('/api/v1/auth/passkeys/registration-options');
    const response = await startRegistration({ optionsJSON: options as never });
    await post('/api/v1/auth/passkeys', { name: t('account.passkeyName', { date: new Date().toLocaleDateString() }), response });
    passkeys.reload();
  });
  const removePasskey = useAction(async (id: string) => {
    await del(`/api/v1/auth/passkeys/${id}`);
    passkeys.reload();
  });
  const newCodes = useAction(async () => setCodes((await post<{ recoveryCodes: string[] }>('/api/v1/auth/mfa/recovery-codes')).recoveryCodes));
  return (
    <main>
      <h1>{t('nav.account')}</h1>
      <p className="hint">
        {t('account.role')}: {t(`role.${session.role}`, { defaultValue: session.role })}
      </p>
      <section className="panel">
        <h2>{t('account.sessions')}</h2>
        <ProblemNote problem={sessions.problem ?? end.problem} />
        {sessions.data ? <SessionTable rows={sessions.data.items} format={format} onEnd={(id) => void end.run(id)} /> : null}
      </section>
      <section className="panel">
        <h2>{t('account.passkeys')}</h2>
        <ul>
          {(passkeys.data?.items ?? []).map((passkey) => (
            <li key={passkey.id}>
              {passkey.name} · {format.date(passkey.createdAt)}{' '}
              <button type="button" className="small" onClick={() => void removePasskey.run(passkey.id)}>
                {t('account.remove')}
              </button>
            </li>
          ))}
        </ul>
        <button type="button" onClick={() => void addPasskey.run()} disabled={addPasskey.busy}>
          {t('account.addPasskey')}
        </button>
        <ProblemNote problem={passkeys.problem ?? addPasskey.problem ?? removePasskey.problem} />
      </section>
      <section className="panel">
        <h2>{t('account.recovery')}</h2>
        <p>{t('account.recoveryExplain')}</p>
        <button type="button" onClick={() => void newCodes.run()} disabled={newCodes.busy}>
          {t('account.newCodes')}
        </button>
        <ProblemNote problem={newCodes.problem} />
        {codes ? (
          <ol className="codes">
            {codes.map((code) => (
              <li key={code}>
                <code>{code}</code>
              </li>
            ))}
          </ol>
        ) : null}
      </section>
    </main>
  );
}
