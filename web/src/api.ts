/**
 * Every call to the Ringvakt API goes through here: same origin, the session cookie (HttpOnly, so
 * never visible to this code), the CSRF token in a header for every change, and problem+json
 * answers turned into ApiProblem with the server's stable code.
 *
 * Two answers are recovered from without losing what is on screen: a session that ended mid-shift
 * (401) and a sensitive change that needs a fresh proof of identity (403 reauthentication_required).
 * Both ask the person through a dialog (App.tsx) and then repeat the request once.
 */

export type FieldProblem = { path: string; message: string };

export class ApiProblem extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string | undefined;
  readonly errors: FieldProblem[];
  readonly requestId: string | undefined;

  constructor(status: number, body: { code?: string; title?: string; detail?: string; errors?: FieldProblem[]; requestId?: string }) {
    super(body.detail ?? body.title ?? `HTTP ${status}`);
    this.status = status;
    this.code = body.code ?? (status === 0 ? 'network' : 'unknown');
    this.detail = body.detail ?? body.title;
    this.errors = body.errors ?? [];
    this.requestId = body.requestId;
  }

  /** The message for one form field (paths look like "body/email", or "body/dispositions/2/code" inside a list). */
  fieldMessage(field: string): string | undefined {
    const problem = this.errors.find((item) => item.path === `body/${field}` || item.path === field || item.path.startsWith(`body/${field}/`));
    if (!problem) return undefined;
    const inner = problem.path.slice(`body/${field}/`.length);
    return problem.path.startsWith(`body/${field}/`) && inner ? `${inner}: ${problem.message}` : problem.message;
  }
}

type Recovery = {
  /** The session is gone: sign in again (resolves when signed in, rejects when the person gives up). */
  signInAgain(): Promise<void>;
  /** Prove identity again for a sensitive change. */
  stepUp(): Promise<void>;
  /** Read and acknowledge the security policy or training published meanwhile. */
  attest(): Promise<void>;
};

let csrfToken = '';
let recovery: Recovery | undefined;
let signedIn = false;

export function setCsrfToken(token: string): void {
  csrfToken = token;
  signedIn = token !== '';
}

export function setRecovery(handlers: Recovery): void {
  recovery = handlers;
}

/** A raw body's file name, as `Content-Disposition` carries it (RFC 6266 and 8187): never in the URL. */
type Options = { body?: unknown; raw?: BodyInit; contentType?: string; fileName?: string; signal?: AbortSignal; noRecovery?: boolean };

/** The server takes a file name of at most this many UTF-16 units. */
const FILE_NAME_UNITS = 200;

/**
 * `attachment; filename*=UTF-8''…`, every character outside RFC 8187's attr-char percent-encoded.
 * The name is cut to what the server takes (never inside a character) and a lone surrogate, which
 * cannot be encoded, becomes U+FFFD.
 */
function dispositionOf(fileName: string): string {
  let name = '';
  for (const char of fileName) {
    const whole = char.length === 1 && char >= '\uD800' && char <= '\uDFFF' ? '\uFFFD' : char;
    if (name.length + whole.length > FILE_NAME_UNITS) break;
    name += whole;
  }
  return `attachment; filename*=UTF-8''${encodeURIComponent(name).replace(/['()*!]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`)}`;
}

async function once(method: string, url: string, options: Options): Promise<Response> {
  const headers: Record<string, string> = { accept: 'application/json, application/problem+json' };
  if (method !== 'GET' && method !== 'HEAD') headers['x-csrf-token'] = csrfToken;
  let body: BodyInit | undefined;
  if (options.raw !== undefined) {
    body = options.raw;
    headers['content-type'] = options.contentType ?? 'application/octet-stream';
    if (options.fileName) headers['content-disposition'] = dispositionOf(options.fileName);
  } else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] = 'application/json';
  }
  try {
    return await fetch(url, { method, headers, body, credentials: 'same-origin', cache: 'no-store', signal: options.signal ?? null });
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new ApiProblem(0, { code: 'network', detail: 'The server could not be reached. Check the connection and try again.' });
  }
}

async function problemOf(response: Response): Promise<ApiProblem> {
  const body = (await response.json().catch(() => ({}))) as ConstructorParameters<typeof ApiProblem>[1];
  return new ApiProblem(response.status, body);
}

/** Sends one request; answers the JSON body (or undefined for 204). */
export async function api<T>(method: string, url: string, options: Options = {}): Promise<T> {
  let response = await once(method, url, options);
  if (!response.ok && !options.noRecovery && recovery) {
    const problem = await problemOf(response.clone());
    if (problem.status === 401 && signedIn) {
      await recovery.signInAgain();
      response = await once(method, url, options);
    } else if (problem.status === 403 && problem.code === 'reauthentication_required') {
      await recovery.stepUp();
      response = await once(method, url, options);
    } else if (problem.status === 403 && problem.code === 'attestation_required') {
      await recovery.attest();
      response = await once(method, url, options);
    }
  }
  if (!response.ok) throw await problemOf(response);
  if (response.status === 204) return undefined as T;
  const type = response.headers.get('content-type') ?? '';
  if (type.includes('json')) return (await response.json()) as T;
  return (await response.text()) as T;
}

export const get = <T>(url: string, signal?: AbortSignal) => api<T>('GET', url, signal ? { signal } : {});
export const post = <T>(url: string, body?: unknown) => api<T>('POST', url, body === undefined ? {} : { body });
export const put = <T>(url: string, body?: unknown) => api<T>('PUT', url, body === undefined ? {} : { body });
export const patch = <T>(url: string, body?: unknown) => api<T>('PATCH', url, { body });
export const del = <T>(url: string) => api<T>('DELETE', url);

/** Query string from the defined values only. */
export function query(values: Record<string, string | number | undefined | null>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  const text = params.toString();
  return text === '' ? '' : `?${text}`;
}

/** A request whose answer is a file (an export bundle): answers it as a Blob. */
export async function fetchFile(method: string, url: string, body?: unknown): Promise<Blob> {
  const response = await once(method, url, body === undefined ? {} : { body });
  if (!response.ok) throw await problemOf(response);
  return response.blob();
}
