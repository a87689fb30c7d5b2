import { useCallback, useEffect, useId, useRef, useState, type ReactNode } from 'react';
import { useTranslation } from 'react-i18next';
import { ApiProblem, get } from '../api.ts';

/** Loads JSON from the API; reload() fetches again. A newer load supersedes an older one still running. */
export function useLoad<T>(url: string | null): { data: T | undefined; problem: ApiProblem | undefined; loading: boolean; reload: () => void } {
  const [data, setData] = useState<T>();
  const [problem, setProblem] = useState<ApiProblem>();
  const [loading, setLoading] = useState(false);
  const [round, setRound] = useState(0);
  useEffect(() => {
    if (url === null) return;
    const controller = new AbortController();
    setLoading(true);
    get<T>(url, controller.signal)
      .then((value) => {
        setData(value);
        setProblem(undefined);
      })
      .catch((error: unknown) => {
        if (error instanceof ApiProblem) setProblem(error);
      })
      .finally(() => {
        if (!controller.signal.aborted) setLoading(false);
      });
    return () => controller.abort();
  }, [url, round]);
  const reload = useCallback(() => setRound((value) => value + 1), []);
  return { data, problem, loading, reload };
}

/**
 * Runs an action once at a time: a second click while the first is on its way does nothing (a
 * double-clicked disposition is filed once). The problem, if any, is kept for display.
 */
export function useAction<A extends unknown[], R>(action: (...args: A) => Promise<R>) {
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<ApiProblem>();
  const running = useRef(false);
  const run = useCallback(
    async (...args: A): Promise<R | undefined> => {
      if (running.current) return undefined;
      running.current = true;
      setBusy(true);
      setProblem(undefined);
      try {
        return await action(...args);
      } catch (error) {
        if (error instanceof ApiProblem) setProblem(error);
        else throw error;
        return undefined;
      } finally {
        running.current = false;
        setBusy(false);
      }
    },
    [action],
  );
  return { run, busy, problem, setProblem };
}

/** A problem from the server, said plainly; field problems show beside their fields instead. */
export function ProblemNote({ problem }: { problem: ApiProblem | undefined }) {
  const { t } = useTranslation();
  if (!problem) return null;
  const known = t(`problem.${problem.code}`, { defaultValue: '' });
  return (
    <p className="problem" role="alert">
      {known || problem.detail || t('problem.unknown')}
    </p>
  );
}

export function Field(props: {
  label: string;
  name: string;
  problem?: ApiProblem | undefined;
  hint?: string;
  children: (attributes: { id: string; name: string; 'aria-invalid': boolean; 'aria-describedby': string | undefined }) => ReactNode;
}) {
  const id = useId();
  const message = props.problem?.fieldMessage(props.name);
  const describedBy = message ? `${id}-error` : props.hint ? `${id}-hint` : undefined;
  return (
    <div className="field">
      <label htmlFor={id}>{props.label}</label>
      {props.children({ id, name: props.name, 'aria-invalid': Boolean(message), 'aria-describedby': describedBy })}
      {props.hint && !message ? (
        <small id={`${id}-hint`} className="hint">
          {props.hint}
        </small>
      ) : null}
      {message ? (
        <small id={`${id}-error`} className="field-error">
          {message}
        </small>
      ) : null}
    </div>
  );
}

export function Tabs<K extends string>(props: { tabs: { key: K; label: string }[]; current: K; onChange: (key: K) => void; label: string }) {
  return (
    <div className="tabs" role="tablist" aria-label={props.label}>
      {props.tabs.map((tab) => (
        <button key={tab.key} type="button" role="tab" aria-selected={tab.key === props.current} className={tab.key === props.current ? 'tab current' : 'tab'} onClick={() => props.onChange(tab.key)}>
          {tab.label}
        </button>
      ))}
    </div>
  );
}

/** A table's header row: one column header per cell (a `null` cell is a column not shown). */
export function Head({ cells }: { cells: ReactNode[] }) {
  return (
    <thead>
      <tr>
        {cells.map((cell, index) =>
          cell === null ? null : (
            <th key={index} scope="col">
              {cell}
            </th>
          ),
        )}
      </tr>
    </thead>
  );
}

export function Badge({ tone, children }: { tone: 'ok' | 'warn' | 'bad' | 'info' | 'muted'; children: ReactNode }) {
  return <span className={`badge badge-${tone}`}>{children}</span>;
}

/** Formats times in the person's locale; the UI language decides the words, the browser the format. */
export function useFormat() {
  const { i18n } = useTranslation();
  const locale = i18n.language === 'nb' ? 'nb-NO' : 'en-GB';
  return {
    time: (iso: string | null | undefined) => (iso ? new Date(iso).toLocaleString(locale, { dateStyle: 'short', timeStyle: 'medium' }) : '—'),
    date: (iso: string | null | undefined) => (iso ? new Date(iso).toLocaleDateString(locale) : '—'),
    number: (value: number, digits = 0) => value.toLocaleString(locale, { maximumFractionDigits: digits, minimumFractionDigits: digits }),
    percent: (value: number) => (value * 100).toLocaleString(locale, { maximumFractionDigits: 2, minimumFractionDigits: 2 }) + ' %',
    duration: (ms: number) => {
      const seconds = Math.max(0, Math.floor(ms / 1000));
      const h = Math.floor(seconds / 3600);
      const m = Math.floor((seconds % 3600) / 60);
      const s = seconds % 60;
      return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}` : `${m}:${String(s).padStart(2, '0')}`;
    },
  };
}

/** Re-renders every interval (for clocks and countdowns). */
export function useNow(intervalMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs]);
  return now;
}

/** A modal dialog on the native <dialog> element (focus trapping and Escape come from the browser). */
export function Dialog(props: { open: boolean; title: string; onClose?: () => void; children: ReactNode }) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (props.open && !dialog.open) dialog.showModal();
    if (!props.open && dialog.open) dialog.close();
  }, [props.open]);
  return (
    <dialog ref={ref} aria-labelledby={titleId} onCancel={(event) => (props.onClose ? props.onClose() : event.preventDefault())}>
      <h2 id={titleId}>{props.title}</h2>
      {props.open ? props.children : null}
    </dialog>
  );
}
