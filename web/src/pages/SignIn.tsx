import { useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { startAuthentication } from '@simplewebauthn/browser';
import { ApiProblem, api, setCsrfToken } from '../api.ts';
import { Field, ProblemNote } from '../components/ui.tsx';

type Stage = 'mfa' | 'mfa_enrollment' | 'active';
type Answer = { stage: Stage; csrfToken: string; expiresAt: string };

const TENANT_KEY = 'ringvakt.tenant';

/** The organisation last signed in to on this browser (only its slug: no personal data is kept here). */
export const rememberedTenant = () => localStorage.getItem(TENANT_KEY) ?? '';

/**
 * Sign-in, step by step: organisation, e-mail and password (or a passkey alone, or single sign-on);
 * then the second factor (authenticator code, recovery code or passkey); or, where the role needs
 * one and none is set up yet, enrolment of an authenticator with its recovery codes shown once.
 */
export function SignInForm({ onSignedIn, lockedTenant }: { onSignedIn: () => void; lockedTenant?: string }) {
  const { t } = useTranslation();
  const [tenant, setTenant] = useState(lockedTenant ?? rememberedTenant());
  const [stage, setStage] = useState<'credentials' | Stage>('credentials');
  const [problem, setProblem] = useState<ApiProblem>();
  const [busy, setBusy] = useState(false);

  const attempt = async (work: () => Promise<void>) => {
    if (busy) return;
    setBusy(true);
    setProblem(undefined);
    try {
      await work();
    } catch (error) {
      if (error instanceof ApiProblem) setProblem(error);
      else if (error instanceof Error && error.name === 'NotAllowedError') setProblem(new ApiProblem(400, { code: 'passkey_cancelled' }));
      else throw error;
    } finally {
      setBusy(false);
    }
  };

  const advance = (answer: Answer) => {
    setCsrfToken(answer.csrfToken);
    localStorage.setItem(TENANT_KEY, tenant);
    if (answer.stage === 'active') onSignedIn();
    else setStage(answer.stage);
  };

  const signIn = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    void attempt(async () => {
      advance(await api<Answer>('POST', '/api/v1/auth/login', { body: { tenant, email: String(form.get('email')), password: String(form.get('password')) }, noRecovery: true }));
    });
  };

  const passkeyAlone = () =>
    attempt(async () => {
      const options = await api<Record<string, unknown>>('POST', '/api/v1/auth/passkey-login/options', { body: { tenant }, noRecovery: true });
      const response = await startAuthentication({ optionsJSON: options as never });
      advance(await api<Answer>('POST', '/api/v1/auth/passkey-login', { body: { tenant, response }, noRecovery: true }));
    });

  if (stage === 'mfa') return <SecondFactor onAnswer={advance} attempt={attempt} problem={problem} busy={busy} />;
  if (stage === 'mfa_enrollment') return <Enrolment onDone={onSignedIn} attempt={attempt} problem={problem} busy={busy} />;

  return (
    <form onSubmit={signIn} className="stack" aria-label={t('signin.title')}>
      <Field label={t('signin.organisation')} name="tenant" problem={problem} hint={t('signin.organisationHint')}>
        {(attributes) => (
          <input {...attributes} value={tenant} onChange={(event) => setTenant(event.target.value.trim().toLowerCase())} autoComplete="organization" required readOnly={lockedTenant !== undefined} />
        )}
      </Field>
      <Field label={t('signin.email')} name="email" problem={problem}>
        {(attributes) => <input {...attributes} type="email" autoComplete="username" required />}
      </Field>
      <Field label={t('signin.password')} name="password" problem={problem}>
        {(attributes) => <input {...attributes} type="password" autoComplete="current-password" required />}
      </Field>
      <ProblemNote problem={problem} />
      <button type="submit" className="primary" disabled={busy}>
        {t('signin.submit')}
      </button>
      <div className="row">
        <button type="button" onClick={() => void passkeyAlone()} disabled={busy || tenant === ''}>
          {t('signin.passkey')}
        </button>
        <a className="button" href={tenant ? `/api/v1/auth/sso/${encodeURIComponent(tenant)}/start` : undefined} aria-disabled={tenant === ''}>
          {t('signin.sso')}
        </a>
      </div>
    </form>
  );
}

type StepProps = { attempt: (work: () => Promise<void>) => Promise<void>; problem: ApiProblem | undefined; busy: boolean };

function SecondFactor({ onAnswer, attempt, problem, busy }: StepProps & { onAnswer: (answer: Answer) => void }) {
  const { t } = useTranslation();
  const [method, setMethod] = useState<'totp' | 'recovery_code'>('totp');
  const verify = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const code = String(new FormData(event.currentTarget).get('code')).replace(/\s+/g, '');
    void attempt(async () => onAnswer(await api<Answer>('POST', '/api/v1/auth/mfa/verify', { body: { method, code }, noRecovery: true })));
  };
  const passkey = () =>
    attempt(async () => {
      const options = await api<Record<string, unknown>>('POST', '/api/v1/auth/mfa/passkey-options', { noRecovery: true });
      const response = await startAuthentication({ optionsJSON: options as never });
      onAnswer(await api<Answer>('POST', '/api/v1/auth/mfa/passkey', { body: { response }, noRecovery: true }));
    });
  return (
    <form onSubmit={verify} className="stack" aria-label={t('signin.secondFactor')}>
      <p>{method === 'totp' ? t('signin.enterCode') : t('signin.enterRecovery')}</p>
      <Field label={method === 'totp' ? t('signin.code') : t('signin.recoveryCode')} name="code" problem={problem}>
        {(attributes) => <input {...attributes} key={method} inputMode={method === 'totp' ? 'numeric' : 'text'} autoComplete="one-time-code" required autoFocus />}
      </Field>
      <ProblemNote problem={problem} />
      <button type="submit" className="primary" disabled={busy}>
        {t('signin.verify')}
      </button>
      <div className="row">
        <button type="button" onClick={() => setMethod(method === 'totp' ? 'recovery_code' : 'totp')}>
          {method === 'totp' ? t('signin.useRecovery') : t('signin.useCode')}
        </button>
        <button type="button" onClick={() => void passkey()} disabled={busy}>
          {t('signin.usePasskey')}
        </button>
      </div>
    </form>
  );
}

/** Enrols an authenticator app: QR code and secret, a code to confirm, then the recovery codes, shown once. */
export function Enrolment({ onDone, attempt, problem, busy }: StepProps & { onDone: () => void }) {
  const { t } = useTranslation();
  const [secret, setSecret] = useState<{ secret: string; qrSvg: string }>();
  const [codes, setCodes] = useState<string[]>();
  const start = () => attempt(async () => setSecret(await api<{ secret: string; qrSvg: string }>('POST', '/api/v1/auth/mfa/totp/enrollment', { noRecovery: true })));
  const confirm = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const code = String(new FormData(event.currentTarget).get('code')).replace(/\s+/g, '');
    void attempt(async () => {
      const answer = await api<Answer & { recoveryCodes: string[] }>('POST', '/api/v1/auth/mfa/totp/confirm', { body: { code }, noRecovery: true });
      setCsrfToken(answer.csrfToken);
      setCodes(answer.recoveryCodes);
    });
  };
  if (codes) {
    return (
      <section className="stack" aria-label={t('enrol.recoveryTitle')}>
        <p>{t('enrol.recoveryExplain')}</p>
        <ol className="codes" data-testid="recovery-codes">
          {codes.map((code) => (
            <li key={code}>
              <code>{code}</code>
            </li>
          ))}
        </ol>
        <button type="button" className="primary" onClick={onDone}>
          {t('enrol.saved')}
        </button>
      </section>
    );
  }
  if (!secret) {
    return (
      <section className="stack">
        <p>{t('enrol.required')}</p>
        <ProblemNote problem={problem} />
        <button type="button" className="primary" onClick={() => void start()} disabled={busy}>
          {t('enrol.start')}
        </button>
      </section>
    );
  }
  return (
    <form onSubmit={confirm} className="stack" aria-label={t('enrol.title')}>
      <p>{t('enrol.scan')}</p>
      <img className="qr" src={`data:image/svg+xml;charset=utf-8,${encodeURIComponent(secret.qrSvg)}`} alt={t('enrol.qrAlt')} width={180} height={180} />
      <p>
        {t('enrol.orType')} <code data-testid="totp-secret">{secret.secret}</code>
      </p>
      <Field label={t('signin.code')} name="code" problem={problem}>
        {(attributes) => <input {...attributes} inputMode="numeric" autoComplete="one-time-code" required />}
      </Field>
      <ProblemNote problem={problem} />
      <button type="submit" className="primary" disabled={busy}>
        {t('enrol.confirm')}
      </button>
    </form>
  );
}

/** The one-time setup link (first owner, or an invited user): the token sits in the #fragment. */
export function SetupPage({ onDone }: { onDone: () => void }) {
  const { t } = useTranslation();
  const [token] = useState(() => {
    const value = new URLSearchParams(location.hash.slice(1)).get('token');
    // Out of the address bar and the history at once: the link works once and must not linger.
    history.replaceState(null, '', location.pathname);
    return value;
  });
  const [problem, setProblem] = useState<ApiProblem>();
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    if (form.get('password') !== form.get('confirm')) {
      setProblem(new ApiProblem(400, { code: 'passwords_differ' }));
      return;
    }
    setBusy(true);
    try {
      await api('POST', '/api/v1/setup/complete', { body: { token, password: String(form.get('password')) }, noRecovery: true });
      setDone(true);
    } catch (error) {
      if (error instanceof ApiProblem) setProblem(error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="narrow">
      <h1>{t('setup.title')}</h1>
      {!token ? (
        <p role="alert">{t('setup.noToken')}</p>
      ) : done ? (
        <div className="stack">
          <p role="status">{t('setup.done')}</p>
          <button type="button" className="primary" onClick={onDone}>
            {t('signin.title')}
          </button>
        </div>
      ) : (
        <form className="stack" onSubmit={(event) => void submit(event)}>
          <p>{t('setup.explain')}</p>
          <Field label={t('setup.password')} name="password" problem={problem} hint={t('setup.passwordHint')}>
            {(attributes) => <input {...attributes} type="password" autoComplete="new-password" required minLength={12} />}
          </Field>
          <Field label={t('setup.confirm')} name="confirm" problem={problem}>
            {(attributes) => <input {...attributes} type="password" autoComplete="new-password" required />}
          </Field>
          <ProblemNote problem={problem} />
          <button type="submit" className="primary" disabled={busy}>
            {t('setup.submit')}
          </button>
        </form>
      )}
    </main>
  );
}
