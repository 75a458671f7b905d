// avsc map and array types whose readers bound the entry count.
//
// Trap (as in src/wire/schema.ts): avsc reads a map's or an array's block count and loops that
// many times without comparing it with the bytes left, so a forged count in a 1 KB packet
// could make the decoder spin for minutes, or allocate a huge array before failing. These
// readers refuse a total count above the limit, and a block whose entries could not fit in
// the bytes left (each entry takes at least `entryBytesMin` bytes), before reading anything.
// They throw `BoundExceeded` (over the limit) or mark the read truncated; callers decode in a
// try/catch and turn both into typed errors. Maps are built with a null prototype, so a key
// "__proto__" is an ordinary key.
import avro from "avsc";

/** Thrown by the bounded readers when a count exceeds its limit. */
export class BoundExceeded extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BoundExceeded";
  }
}

interface Tap {
  buf: Buffer;
  pos: number;
  readLong(): number;
  skipLong(): void;
  readString(): string;
}

interface ReadableType {
  _read(tap: Tap): unknown;
}

const types = avro.types as unknown as {
  MapType: new (schema: unknown, options: unknown) => avro.Type;
  ArrayType: new (schema: unknown, options: unknown) => avro.Type;
};

/**
 * Reads the next block count and checks it; returns 0 at the end of the blocks, or -1 after
 * marking the tap truncated.
 */
function nextBlock(tap: Tap, total: number, limit: number, entryBytesMin: number, what: string): number {
  let count = tap.readLong();
  if (count === 0) return 0;
  if (count < 0) {
    count = -count;
    tap.skipLong(); // the block's size in bytes, which we do not need
  }
  if (!Number.isSafeInteger(count) || total + count > limit) {
    throw new BoundExceeded(`${what} holds more than ${limit} entries`);
  }
  if (count * entryBytesMin > tap.buf.length - tap.pos) {
    tap.pos = tap.buf.length + 1; // marks the read invalid: decode() reports offset -1
    return -1;
  }
  return count;
}

/** A map of strings holding at most `entriesMax` entries. */
export function boundedStringMapType(entriesMax: number, what: string): avro.Type {
  class BoundedStringMapType extends types.MapType {
    _read(tap: Tap): Record<string, string> {
      const value: Record<string, string> = Object.create(null);
      let total = 0;
      for (;;) {
        // Each entry takes at least two bytes: two zero-length strings.
        const count = nextBlock(tap, total, entriesMax, 2, what);
        if (count <= 0) return value;
        total += count;
        for (let index = 0; index < count; index++) {
          const key = tap.readString();
          value[key] = tap.readString();
        }
      }
    }
  }
  return new BoundedStringMapType({ type: "map", values: "string" }, { registry: {} });
}

/** An array of `items` holding at most `itemsMax` items, each at least `itemBytesMin` bytes. */
export function boundedArrayType(
  items: avro.Type,
  itemsMax: number,
  itemBytesMin: number,
  what: string,
): avro.Type {
  class BoundedArrayType extends types.ArrayType {
    _read(tap: Tap): unknown[] {
      const reader = items as unknown as ReadableType;
      const value: unknown[] = [];
      for (;;) {
        const count = nextBlock(tap, value.length, itemsMax, itemBytesMin, what);
        if (count <= 0) return value;
        for (let index = 0; index < count; index++) value.push(reader._read(tap));
      }
    }
  }
  return new BoundedArrayType({ type: "array", items }, { registry: {} });
}
