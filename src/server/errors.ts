import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from './zod-provider.ts';
import { isDatabaseUnavailable } from '../db/unavailable.ts';

/**
 * The one error catalogue. Every error a client can see has a stable code, an HTTP status and a
 * fixed title; bodies follow RFC 9457 (application/problem+json). A detail never carries personal
 * data, secrets, SQL, file paths or stack traces: anything unexpected becomes `internal_error`.
 */
export const errorCatalogue = {
  malformed_json: { status: 400, title: 'The request body is not valid JSON' },
  invalid_utf8: { status: 400, title: 'The request is not valid UTF-8' },
  validation_failed: { status: 400, title: 'The request does not match the schema' },
  bad_request: { status: 400, title: 'The request cannot be understood' },
  setup_link_invalid: { status: 400, title: 'The setup link is invalid, expired or already used' },
  password_too_weak: { status: 400, title: 'The password does not meet the password policy' },
  proof_out_of_range: { status: 400, title: 'No proof exists for those positions of the audit tree' },
  mfa_code_invalid: { status: 400, title: 'The code is not valid' },
  passkey_invalid: { status: 400, title: 'The passkey response is not valid' },
  sso_failed: { status: 400, title: 'Single sign-on did not complete' },
  phone_invalid: { status: 400, title: 'The phone number is not a valid number' },
  email_invalid: { status: 400, title: 'The e-mail address is not valid' },
  field_invalid: { status: 400, title: 'A custom field is unknown or its value has the wrong type' },
  csv_invalid: { status: 400, title: 'The file is not a CSV file this import can read' },
  csv_encoding: { status: 400, title: 'The file is not UTF-8 text' },
  csv_headers: { status: 400, title: 'The header row is missing, repeats a column or lacks a mapped column' },
  registry_invalid: { status: 400, title: 'The file is not in the registry format named' },
  campaign_settings_invalid: { status: 400, title: 'The campaign settings could never dial, or break the rules of its jurisdiction' },
  retention_below_minimum: { status: 400, title: 'The retention period is shorter than the law requires for this data' },
  unauthenticated: { status: 401, title: 'Authentication is required' },
  login_failed: { status: 401, title: 'The organisation, e-mail address or password is not right' },
  forbidden: { status: 403, title: 'You do not have the permission this needs' },
  second_factor_required: { status: 403, title: 'Finish signing in with your second factor' },
  mfa_enrollment_required: { status: 403, title: 'Set up a second factor before you continue' },
  attestation_required: { status: 403, title: 'Read and acknowledge the current security policy and training before you continue' },
  reauthentication_required: { status: 403, title: 'Confirm it is you: sign in again to do this' },
  csrf_failed: { status: 403, title: 'The request did not come from this application' },
  ip_not_allowed: { status: 403, title: 'Your network address is not allowed for this organisation' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  conflict: { status: 409, title: 'The request conflicts with the current state' },
  campaign_not_ready: { status: 409, title: 'The campaign cannot start yet' },
  invalid_transition: { status: 409, title: 'That change is not allowed from the current state' },
  legal_hold: { status: 409, title: 'A legal hold keeps this data' },
  contact_restricted: { status: 409, title: "This contact's processing is restricted: the data is kept, not used" },
  subject_in_call: { status: 409, title: 'A call with this person is in progress' },
  request_duplicate: { status: 409, title: 'An open request already asks for this' },
  request_not_verified: { status: 409, title: "The requester's identity has not been verified yet" },
  download_link_invalid: { status: 410, title: 'The download link is invalid, expired or already used' },
  contact_erased: { status: 410, title: "This contact's personal data was erased" },
  payload_too_large: { status: 413, title: 'The request body is too large' },
  uri_too_long: { status: 414, title: 'The URL is too long' },
  unsupported_media_type: { status: 415, title: 'The content type is not supported' },
  rate_limited: { status: 429, title: 'Too many requests' },
  reveal_limit: { status: 429, title: 'You have revealed as many personal values as one hour allows' },
  lookup_limit: { status: 429, title: 'You have looked up as many numbers and addresses as one hour allows' },
  account_locked: { status: 429, title: 'Too many failed sign-ins: the account is locked for a while' },
  headers_too_large: { status: 431, title: 'The request headers are too large' },
  internal_error: { status: 500, title: 'Something went wrong on our side' },
  service_unavailable: { status: 503, title: 'The service is not ready' },
  webhook_forbidden_address: { status: 400, title: 'The webhook points at an address that is not public' },
  rule_impossible: { status: 400, title: 'The rule could never fire, or would fire on everything' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

export type FieldProblem = { path: string; message: string };

export class AppError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    readonly detail?: string,
    readonly fieldProblems?: FieldProblem[],
  ) {
    super(detail ?? errorCatalogue[code].title);
    this.name = 'AppError';
    this.status = errorCatalogue[code].status;
  }
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

export type ProblemBody = {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail?: string;
  requestId?: string;
  errors?: FieldProblem[];
};

export function problemBody(error: AppError, requestId?: string): ProblemBody {
  return {
    type: `urn:ringvakt:problem:${error.code}`,
    title: errorCatalogue[error.code].title,
    status: error.status,
    code: error.code,
    ...(error.detail ? { detail: error.detail } : {}),
    ...(requestId ? { requestId } : {}),
    ...(error.fieldProblems ? { errors: error.fieldProblems } : {}),
  };
}

/** Fastify's own error codes that are the client's fault, mapped into the catalogue. */
const fastifyCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'malformed_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'malformed_json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_CTP_INVALID_TYPE: 'unsupported_media_type',
  FST_ERR_BAD_URL: 'bad_request',
  FST_ERR_ASYNC_CONSTRAINT: 'bad_request',
  FST_ERR_VALIDATION: 'validation_failed',
};

const clip = (text: string, length: number) => (text.length > length ? `${text.slice(0, length)}…` : text);

/** Turns anything thrown into an AppError; unknown errors become internal_error. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (isDatabaseUnavailable(error)) return new AppError('service_unavailable', 'The database is unreachable; try again shortly.');
  if (hasZodFastifySchemaValidationErrors(error)) {
    const where = (error as FastifyError).validationContext ?? 'body';
    const problems = error.validation.slice(0, 20).map((issue) => ({
      path: clip(`${where}${issue.instancePath || ''}`, 120),
      message: clip(issue.message ?? 'invalid', 160),
    }));
    return new AppError('validation_failed', undefined, problems);
  }
  if (isResponseSerializationError(error)) return new AppError('internal_error');
  const fastifyError = error as Partial<FastifyError> & { type?: string; status?: number };
  if (typeof fastifyError.code === 'string' && fastifyError.code in fastifyCodes) {
    return new AppError(fastifyCodes[fastifyError.code] ?? 'bad_request');
  }
  // Errors raised by body parsing in Node or Fastify internals that carry a 4xx status.
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode === 413) {
    return new AppError('payload_too_large');
  }
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode === 415) {
    return new AppError('unsupported_media_type');
  }
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return new AppError('bad_request');
  }
  return new AppError('internal_error');
}

export function sendProblem(reply: FastifyReply, error: AppError): FastifyReply {
  return reply
    .code(error.status)
    .header('content-type', PROBLEM_CONTENT_TYPE)
    .header('cache-control', 'no-store')
    .send(JSON.stringify(problemBody(error, reply.request.id)));
}

/** Fastify error handler: logs server faults (without request data) and answers problem+json. */
export function handleError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const appError = toAppError(error);
  // A deliberate 503 (draining for a shutdown, /readyz saying the database is away) is a state the
  // server reports, not a fault in it: logged, without a stack, below error level.
  if (appError.code === 'service_unavailable') {
    if (error instanceof AppError) request.log.info({ code: appError.code }, 'request refused: not available');
    else request.log.warn({ code: appError.code, cause: (error as { code?: unknown }).code ?? (error as Error).name }, 'request failed: the database is unreachable');
  } else if (appError.status >= 500) {
    request.log.error({ err: error }, 'request failed');
  } else {
    request.log.info({ code: appError.code }, 'request rejected');
  }
  return sendProblem(reply, appError);
}
