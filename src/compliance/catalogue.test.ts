import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CATALOGUE_FILE, catalogueJsonSchema, loadCatalogue } from './catalogue.ts';
import { QUESTIONNAIRE_FILE, questionnaireJsonSchema, loadQuestionnaire } from './questionnaire.ts';
import { CHECKS } from './checks.ts';

/**
 * The catalogue and the questionnaire are data with a published JSON Schema beside them (for
 * editors and reviewers); the schema files must say what the loader enforces.
 */
describe('the compliance data files', () => {
  it('carry JSON Schemas equal to what the loader enforces', () => {
    expect(JSON.parse(readFileSync(CATALOGUE_FILE.replace(/\.json$/, '.schema.json'), 'utf8'))).toEqual(catalogueJsonSchema());
    expect(JSON.parse(readFileSync(QUESTIONNAIRE_FILE.replace(/\.json$/, '.schema.json'), 'utf8'))).toEqual(questionnaireJsonSchema());
  });

  it('load as the server loads them: at least 40 automated checks, each named by a control; every question on known controls', () => {
    const catalogue = loadCatalogue();
    expect(CHECKS.length).toBeGreaterThanOrEqual(40);
    expect(new Set(CHECKS.map((check) => check.id)).size).toBe(CHECKS.length);
    expect(catalogue.controls.some((control) => control.kind === 'organisational')).toBe(true);
    expect(loadQuestionnaire().questions.length).toBeGreaterThanOrEqual(30);
  });
});
