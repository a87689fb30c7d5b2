import { createContext, lazy, Suspense, useCallback, useContext, useEffect, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { useTranslation } from 'react-i18next';
import { ApiProblem, api, get, post, setCsrfToken, setRecovery } from './api.ts';
import { Dialog, Field, ProblemNote } from './components/ui.tsx';
import { navigate, usePath } from './router.ts';
import { rememberedTenant, SetupPage, SignInForm } from './pages/SignIn.tsx';
import { AgentDesktop } from './pages/AgentDesktop.tsx';
import { Attestation } from './pages/Attestation.tsx';

const Wallboard = lazy(() => import('./pages/Wallboard.tsx'));
const Admin = lazy(() => import('./pages/Admin.tsx'));
const Privacy = lazy(() => import('./pages/Privacy.tsx'));
const Security = lazy(() => import('./pages/Security.tsx'));
const Compliance = lazy(() => import('./pages/Compliance.tsx'));
const Account = lazy(() => import('./pages/Account.tsx'));

export type Session = { userId: string; tenantId: string; role: string; permissions: string[]; stage: string; csrfToken: string; authenticatedAt: string; attestationRequired: boolean };

const SessionContext = createContext<{ session: Session; can: (permission: string) => boolean; tenant: { slug: string; name: string } } | null>(null);

export function useSession() {
  const value = useContext(SessionContext);
  if (!value) throw new Error('useSession outside a signed-in page');
  return value;
}

type Area = { path: string; key: string; permission: string };
const AREAS: Area[] = [
  { path: '/agent', key: 'nav.agent', permission: 'calls:handle' },
  { path: '/wallboard', key: 'nav.wallboard', permission: 'agents:monitor' },
  { path: '/admin', key: 'nav.admin', permission: 'users:read' },
  { path: '/privacy', key: 'nav.privacy', permission: 'privacy:manage' },
  { path: '/security', key: 'nav.security', permission: 'audit:read' },
  { path: '/compliance', key: 'nav.compliance', permission: 'audit:read' },
];

export function App() {
  const { t } = useTranslation();
  const path = usePath();
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [tenant, setTenant] = useState<{ slug: string; name: string }>({ slug: '', name: '' });
  const [recovering, setRecovering] = useState<'signin' | 'stepup' | 'attest' | null>(null);
  // One recovery at a time, shared: every request that failed meanwhile waits for the same answer.
  const pending = useRef<{ promise: Promise<void>; resolve: () => void; reject: (error: unknown) => void } | null>(null);
  const signedInAs = useRef<string | null>(null);

  const loadSession = useCallback(async () => {
    try {
      const current = await api<Session>('GET', '/api/v1/auth/session', { noRecovery: true });
      setCsrfToken(current.csrfToken);
      if (current.stage !== 'active') {
        setSession(null);
        return;
      }
      // Someone else signed in over the dialog: nothing of the previous person's page may stay.
      if (signedInAs.current !== null && signedInAs.current !== current.userId) {
        location.reload();
        return;
      }
      signedInAs.current = current.userId;
      setSession(current);
      // The security policy or training is owed: nothing else loads until it is acknowledged.
      if (current.attestationRequired) return;
      const info = await get<{ slug: string; name: string }>('/api/v1/tenant');
      setTenant(info);
    } catch (error) {
      if (error instanceof ApiProblem && error.status === 401) setSession(null);
      else throw error;
    }
  }, []);

  useEffect(() => {
    void loadSession();
    // Ask the person, keep the page (and whatever they typed) as it is, and carry on after.
    const ask = (kind: 'signin' | 'stepup' | 'attest') => {
      if (pending.current) return pending.current.promise;
      const handlers: { resolve: () => void; reject: (error: unknown) => void } = { resolve: () => undefined, reject: () => undefined };
      const promise = new Promise<void>((resolve, reject) => {
        handlers.resolve = resolve;
        handlers.reject = reject;
      });
      pending.current = { promise, ...handlers };
      setRecovering(kind);
      return promise;
    };
    setRecovery({ signInAgain: () => ask('signin'), stepUp: () => ask('stepup'), attest: () => ask('attest') });
  }, [loadSession]);

  const finishRecovery = (ok: boolean) => {
    const waiting = pending.current;
    pending.current = null;
    setRecovering(null);
    if (!ok) {
      waiting?.reject(new ApiProblem(401, { code: 'unauthenticated' }));
      return;
    }
    // Who is signed in now (and their permissions) comes from the server before anything goes on.
    void loadSession().then(() => waiting?.resolve(), (error: unknown) => waiting?.reject(error));
  };

  if (path === '/setup') return <Shell>{<SetupPage onDone={() => navigate('/signin')} />}</Shell>;
  if (session === undefined) return <Shell><p className="loading">{t('common.loading')}</p></Shell>;
  if (session === null) {
    return (
      <Shell>
        <main className="narrow">
          <h1>{t('signin.title')}</h1>
          <SignInForm
            onSignedIn={() => {
              void loadSession().then(() => navigate(path === '/signin' || path === '/' ? '/' : path));
            }}
          />
        </main>
      </Shell>
    );
  }

  // The sign-in and step-up dialogs, for any page: a session that idles out, or a change that needs proof, is recovered here.
  const recoveryDialogs = (
    <>
      <Dialog open={recovering === 'signin'} title={t('recover.signinTitle')} onClose={() => finishRecovery(false)}>
        <p>{t('recover.signinExplain')}</p>
        <SignInForm lockedTenant={tenant.slug || rememberedTenant()} onSignedIn={() => finishRecovery(true)} />
      </Dialog>
      <Dialog open={recovering === 'stepup'} title={t('recover.stepUpTitle')} onClose={() => finishRecovery(false)}>
        <StepUp onDone={finishRecovery} />
      </Dialog>
    </>
  );

  if (session.attestationRequired) {
    return (
      <Shell>
        <main className="narrow">
          <Attestation onDone={() => void loadSession()} />
          <button type="button" onClick={() => void api('POST', '/api/v1/auth/logout', { noRecovery: true }).catch(() => undefined).then(() => (setCsrfToken(''), (signedInAs.current = null), setSession(null)))}>
            {t('nav.signOut')}
          </button>
        </main>
        {recoveryDialogs}
      </Shell>
    );
  }

  const can = (permission: string) => session.permissions.includes(permission);
  const areas = AREAS.filter((area) => can(area.permission));
  const home = areas[0]?.path ?? '/account';
  const current = path === '/' || path === '/signin' ? home : path;
  if (current !== path) queueMicrotask(() => navigate(current));

  const signOut = async () => {
    await post('/api/v1/auth/logout').catch(() => undefined);
    setCsrfToken('');
    signedInAs.current = null;
    setSession(null);
    navigate('/signin');
  };

  return (
    <SessionContext.Provider value={{ session, can, tenant }}>
      <Shell
        nav={
          <nav aria-label={t('nav.label')}>
            <ul>
              {areas.map((area) => (
                <li key={area.path}>
                  <a href={area.path} aria-current={current.startsWith(area.path) ? 'page' : undefined} onClick={(event) => (event.preventDefault(), navigate(area.path))}>
                    {t(area.key)}
                  </a>
                </li>
              ))}
              <li>
                <a href="/account" aria-current={current === '/account' ? 'page' : undefined} onClick={(event) => (event.preventDefault(), navigate('/account'))}>
                  {t('nav.account')}
                </a>
              </li>
            </ul>
            <span className="tenant">{tenant.name}</span>
            <button type="button" onClick={() => void signOut()}>
              {t('nav.signOut')}
            </button>
          </nav>
        }
      >
        <Suspense fallback={<p className="loading">{t('common.loading')}</p>}>
          <Page path={current} can={can} />
        </Suspense>
        {recoveryDialogs}
        <Dialog open={recovering === 'attest'} title={t('attest.title')} onClose={() => finishRecovery(false)}>
          <Attestation titled={false} onDone={() => finishRecovery(true)} />
        </Dialog>
      </Shell>
    </SessionContext.Provider>
  );
}

function Page({ path, can }: { path: string; can: (permission: string) => boolean }) {
  const { t } = useTranslation();
  const denied = <main><p role="alert">{t('common.noAccess')}</p></main>;
  if (path.startsWith('/agent')) return can('calls:handle') ? <AgentDesktop /> : denied;
  if (path.startsWith('/wallboard')) return can('agents:monitor') ? <Wallboard /> : denied;
  if (path.startsWith('/admin')) return can('users:read') ? <Admin /> : denied;
  if (path.startsWith('/privacy')) return can('privacy:manage') ? <Privacy /> : denied;
  if (path.startsWith('/security')) return can('audit:read') ? <Security /> : denied;
  if (path.startsWith('/compliance')) return can('audit:read') ? <Compliance /> : denied;
  return <Account />;
}

function StepUp({ onDone }: { onDone: (ok: boolean) => void }) {
  const { t } = useTranslation();
  const [problem, setProblem] = useState<ApiProblem>();
  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const code = String(form.get('code') ?? '').trim();
    try {
      const answer = await api<{ csrfToken: string }>('POST', '/api/v1/auth/reauthenticate', { body: { password: String(form.get('password')), ...(code ? { code } : {}) }, noRecovery: true });
      setCsrfToken(answer.csrfToken);
      onDone(true);
    } catch (error) {
      if (error instanceof ApiProblem) setProblem(error);
    }
  };
  return (
    <form className="stack" onSubmit={(event) => void submit(event)}>
      <p>{t('recover.stepUpExplain')}</p>
      <Field label={t('signin.password')} name="password" problem={problem}>
        {(attributes) => <input {...attributes} type="password" autoComplete="current-password" required />}
      </Field>
      <Field label={t('signin.code')} name="code" problem={problem}>
        {(attributes) => <input {...attributes} inputMode="numeric" autoComplete="one-time-code" />}
      </Field>
      <ProblemNote problem={problem} />
      <div className="row">
        <button type="submit" className="primary">
          {t('recover.confirm')}
        </button>
        <button type="button" onClick={() => onDone(false)}>
          {t('common.cancel')}
        </button>
      </div>
    </form>
  );
}

function Shell({ nav, children }: { nav?: ReactNode; children: ReactNode }) {
  const { t, i18n } = useTranslation();
  useEffect(() => {
    document.documentElement.lang = i18n.language;
  }, [i18n.language]);
  return (
    <>
      <a className="skip" href="#content">
        {t('common.skip')}
      </a>
      <header className="top">
        <span className="brand">Ringvakt</span>
        {nav}
        <label className="language">
          <span className="visually-hidden">{t('common.language')}</span>
          <select value={i18n.language} onChange={(event) => void i18n.changeLanguage(event.target.value).then(() => localStorage.setItem('ringvakt.language', event.target.value))}>
            <option value="en">English</option>
            <option value="nb">Norsk bokmål</option>
          </select>
        </label>
      </header>
      <div id="content">{children}</div>
    </>
  );
}
