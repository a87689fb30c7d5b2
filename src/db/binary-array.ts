/**
 * One-dimensional PostgreSQL arrays in the server's binary wire format, for bulk statements that
 * pass thousands of values per column (`unnest($1::uuid[], $2::bytea[], …)`).
 *
 * pg sends a Buffer parameter in binary format, and the server reads it with the receive function
 * of the type the statement casts it to (`$1::bytea[]` → array_recv with bytea elements). The text
 * form pg would otherwise write costs at both ends: every bytea becomes `\\x…` hex, quoted and
 * escaped, and the server parses the array character by character and decodes the hex again. In
 * binary, each element is its length and its bytes.
 *
 * The format (PostgreSQL's array_send/array_recv): int32 number of dimensions (0 for an empty
 * array), int32 flags (1 when an element is NULL), uint32 element type OID, then per dimension
 * int32 length and int32 lower bound (1), then per element int32 byte length (-1 for NULL) and the
 * bytes. The server checks the element type against the cast and refuses a mismatch
 * ("wrong element type"), so a wrong helper call fails loudly, never stores wrong values.
 */

const ELEMENT_TYPE = { bool: 16, bytea: 17, int8: 20, int2: 21, int4: 23, text: 25, uuid: 2950 } as const;
export type ArrayElementType = keyof typeof ELEMENT_TYPE;

type ElementValue<T extends ArrayElementType> = T extends 'bytea' ? Buffer : T extends 'bool' ? boolean : T extends 'int2' | 'int4' | 'int8' ? number : string;

const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The 16 bytes of a UUID in its canonical text form (refused otherwise: the server would refuse it too). */
function writeUuid(out: Buffer, offset: number, value: string): void {
  if (!UUID_TEXT.test(value)) throw new TypeError('not a UUID in canonical form');
  let at = offset;
  for (let index = 0; index < 36; index += 2) {
    if (index === 8 || index === 13 || index === 18 || index === 23) index += 1;
    out[at++] = (hexDigit(value.charCodeAt(index)) << 4) | hexDigit(value.charCodeAt(index + 1));
  }
}

/** A hex digit's value from its character code ('0'–'9', 'a'–'f', 'A'–'F'; checked by the caller). */
const hexDigit = (code: number) => (code <= 57 ? code - 48 : (code | 32) - 87);

/**
 * Node's integer writers check only the range: NaN would be written as 0 and 1.5 as 1, where the
 * text form made the server refuse them. Refused here instead.
 */
function checkInteger(value: number, safe: boolean): number {
  if (!(safe ? Number.isSafeInteger(value) : Number.isInteger(value))) throw new TypeError('not an integer (or beyond 2^53 for int8)');
  return value;
}

function elementBytes(type: ArrayElementType, value: unknown): number {
  switch (type) {
    case 'bytea':
      return (value as Buffer).length;
    case 'text':
      return Buffer.byteLength(value as string, 'utf8');
    case 'uuid':
      return 16;
    case 'bool':
      return 1;
    case 'int2':
      return 2;
    case 'int4':
      return 4;
    case 'int8':
      return 8;
  }
}

function writeElement(type: ArrayElementType, out: Buffer, offset: number, value: unknown, length: number): void {
  switch (type) {
    case 'bytea':
      (value as Buffer).copy(out, offset);
      return;
    case 'text':
      out.write(value as string, offset, length, 'utf8');
      return;
    case 'uuid':
      writeUuid(out, offset, value as string);
      return;
    case 'bool':
      if (typeof value !== 'boolean') throw new TypeError('not a boolean');
      out[offset] = value ? 1 : 0;
      return;
    case 'int2':
      out.writeInt16BE(checkInteger(value as number, false), offset);
      return;
    case 'int4':
      out.writeInt32BE(checkInteger(value as number, false), offset);
      return;
    case 'int8':
      out.writeBigInt64BE(BigInt(checkInteger(value as number, true)), offset);
      return;
  }
}

/** Bytes before the first element: dimensions, flags, element type, then length and lower bound. */
const HEADER_BYTES = 20;

/**
 * A binary array built one element at a time, for a caller that makes its values one by one (an
 * import's sealing thread): each value can be dropped as soon as it is written, instead of all of
 * them living until the array is built — which, for thousands of rows, the collector has to copy
 * and promote. `finish()` returns the parameter, an exact-size Buffer of its own (never a view into
 * Node's shared pool, so it can be moved to another thread).
 */
export class BinaryArrayWriter<T extends ArrayElementType> {
  readonly #type: T;
  #out: Buffer;
  #length = HEADER_BYTES;
  #count = 0;
  #hasNull = 0;

  constructor(type: T, expectedBytes = 4096) {
    this.#type = type;
    this.#out = Buffer.allocUnsafeSlow(HEADER_BYTES + Math.max(64, expectedBytes));
  }

  get count(): number {
    return this.#count;
  }

  #reserve(bytes: number): void {
    if (this.#length + bytes <= this.#out.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(this.#out.length * 2, this.#length + bytes));
    this.#out.copy(grown, 0, 0, this.#length);
    this.#out = grown;
  }

  push(value: ElementValue<T> | null): void {
    this.#count += 1;
    if (value === null) {
      this.#reserve(4);
      this.#out.writeInt32BE(-1, this.#length);
      this.#length += 4;
      this.#hasNull = 1;
      return;
    }
    if (this.#type === 'text') {
      // At most three bytes per UTF-16 unit; the length is written once the text is.
      const text = value as string;
      this.#reserve(4 + 3 * text.length);
      const written = this.#out.write(text, this.#length + 4, 'utf8');
      this.#out.writeInt32BE(written, this.#length);
      this.#length += 4 + written;
      return;
    }
    const length = elementBytes(this.#type, value);
    this.#reserve(4 + length);
    this.#out.writeInt32BE(length, this.#length);
    writeElement(this.#type, this.#out, this.#length + 4, value, length);
    this.#length += 4 + length;
  }

  finish(): Buffer {
    if (this.#count === 0) {
      const empty = Buffer.allocUnsafeSlow(12);
      empty.writeInt32BE(0, 0);
      empty.writeInt32BE(0, 4);
      empty.writeUInt32BE(ELEMENT_TYPE[this.#type], 8);
      return empty;
    }
    const out = Buffer.allocUnsafeSlow(this.#length);
    this.#out.copy(out, 0, 0, this.#length);
    out.writeInt32BE(1, 0);
    out.writeInt32BE(this.#hasNull, 4);
    out.writeUInt32BE(ELEMENT_TYPE[this.#type], 8);
    out.writeInt32BE(this.#count, 12);
    out.writeInt32BE(1, 16);
    return out;
  }
}

/**
 * The values as one binary array parameter; cast it in the statement to the same type
 * (`${binaryArray('uuid', ids)}::uuid[]`). NULL elements are allowed.
 */
export function binaryArray<T extends ArrayElementType>(type: T, values: readonly (ElementValue<T> | null)[]): Buffer {
  const writer = new BinaryArrayWriter(type, values.length * 24);
  // Indexed: thousands of elements per call, and no iterator object for the collector.
  for (let index = 0; index < values.length; index += 1) writer.push(values[index] ?? null);
  return writer.finish();
}
