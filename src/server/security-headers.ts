/**
 * The security headers of every response, computed once at start. (A per-request middleware that
 * rebuilds the Content-Security-Policy string on every answer cost a measurable share of a short
 * request; these never change while the server runs.)
 *
 * - CSP: only our own origin may supply scripts, styles, images (and data: images), fonts and
 *   connections; no plugins; no <base> rewriting; forms post only to us; no framing by anyone.
 * - HSTS and upgrade-insecure-requests only under TLS, where they mean something.
 * - API answers carry personal data: no shared or private cache may keep them (`no-store`),
 *   unless a route sets its own Cache-Control (static documentation assets).
 */
export function securityHeaders(options: { tls: boolean }): Readonly<Record<string, string>> {
  const csp = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    ...(options.tls ? ['upgrade-insecure-requests'] : []),
  ].join('; ');
  return Object.freeze({
    'content-security-policy': csp,
    ...(options.tls ? { 'strict-transport-security': 'max-age=31536000; includeSubDomains' } : {}),
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
    'origin-agent-cluster': '?1',
    'referrer-policy': 'no-referrer',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'x-permitted-cross-domain-policies': 'none',
    'x-dns-prefetch-control': 'off',
    'cache-control': 'no-store',
  });
}
