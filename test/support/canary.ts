/**
 * The suite-wide personal-data canary. Seeding registers the personal data it writes (names,
 * e-mails; tests add phone numbers and the like); every log line of every test logger is kept;
 * and when a test database is dropped, its logs, its audit rows and every problem body the test
 * app answered are searched for any registered value. A hit fails the test file, naming where
 * the value leaked — so any test of any feature doubles as a leak test.
 */
const personalData = new Set<string>();
/** The line arrays of every capturing logger (kept by reference: they fill up after this call). */
const logSources: string[][] = [];
const problemBodies: string[] = [];

/** Values that must never appear in a log, an error body, audit details or metrics. */
export function registerPersonalData(...values: string[]): void {
  for (const value of values) if (value.length >= 6) personalData.add(value.toLowerCase());
}

export function recordLogLines(lines: string[]): void {
  logSources.push(lines);
}

export function recordProblemBody(body: string): void {
  problemBodies.push(body);
}

/** The first registered value found in `text`, if any. */
export function findPersonalData(text: string): string | undefined {
  const lower = text.toLowerCase();
  for (const value of personalData) if (lower.includes(value)) return value;
  return undefined;
}

/** Throws, naming the place, when registered personal data appears in logs or problem bodies. */
export function assertNoPersonalDataLeaked(extra: { where: string; text: string }[] = []): void {
  const places = [
    ...logSources.flat().map((text) => ({ where: 'a log line', text })),
    ...problemBodies.map((text) => ({ where: 'a problem+json body', text })),
    ...extra,
  ];
  for (const place of places) {
    const found = findPersonalData(place.text);
    if (found) throw new Error(`Personal data (${found}) reached ${place.where}: ${place.text.slice(0, 300)}`);
  }
}
