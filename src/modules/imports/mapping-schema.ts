import { z } from '../../zod.ts';

/**
 * A column mapping: CSV header → what the column holds. Targets:
 *   externalId, name, email, birthDate, notes, timeZone,
 *   phone (a mobile), phone:mobile | phone:home | phone:work | phone:other,
 *   address.line1 | address.line2 | address.postalCode | address.city | address.region | address.country,
 *   field:<custom field key>, ignore.
 * Headers not in the mapping are ignored; a mapped header missing from the file is an error.
 */
const targetPattern = /^(externalId|name|email|birthDate|notes|timeZone|phone|phone:(mobile|home|work|other)|address\.(line1|line2|postalCode|city|region|country)|field:[a-z][a-z0-9_]{0,39}|ignore)$/;

export const mappingSchema = z
  .record(z.string().min(1).max(200), z.string().regex(targetPattern, 'an import target (see the API documentation)'))
  .refine((mapping) => Object.keys(mapping).length >= 1 && Object.keys(mapping).length <= 100, 'map 1–100 columns')
  .refine((mapping) => {
    const singles = Object.values(mapping).filter((target) => !target.startsWith('phone') && target !== 'ignore');
    return new Set(singles).size === singles.length;
  }, 'each target other than phones is mapped from one column at most')
  .refine((mapping) => Object.values(mapping).filter((target) => target.startsWith('phone')).length <= 10, 'at most 10 phone columns');

export type Mapping = z.infer<typeof mappingSchema>;
