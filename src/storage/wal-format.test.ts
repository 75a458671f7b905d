// WAL format codecs: round trips (property tests) and checksums that catch every single flipped
// bit of a record header and of a snapshot file.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ByteReader,
  ByteWriter,
  type CheckpointGroup,
  decodeCheckpointGroup,
  decodeSnapshotFile,
  emptyRecordHeader,
  encodeCheckpointGroup,
  encodeSnapshotHead,
  RecordKind,
  readRecordHeader,
  recordHeaderBytes,
  sealRecord,
} from "./wal-format.ts";

const index = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const nodeId = fc.string({ maxLength: 20 });
const configuration = fc.record({
  voters: fc.array(nodeId, { maxLength: 5 }),
  learners: fc.array(nodeId, { maxLength: 3 }),
});

describe("wal format", () => {
  it("a ByteWriter that grows keeps every byte written before", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(0xffffffff), fc.double({ noNaN: true }), fc.option(nodeId)), {
          maxLength: 200,
        }),
        (values) => {
          const writer = new ByteWriter(1);
          for (const [word, float, text] of values) {
            writer.u32(word);
            writer.f64(float);
            writer.shortString(text);
          }
          const reader = new ByteReader(writer.buffer, 0, writer.length);
          for (const [word, float, text] of values) {
            expect([reader.u32(), reader.f64(), reader.shortString()]).toEqual([word, float, text]);
          }
          expect(reader.ok).toBe(true);
          reader.u8();
          expect(reader.ok).toBe(false);
        },
      ),
    );
  });

  it("a record header reads back as sealed, and any flipped bit of it is caught", () => {
    fc.assert(
      fc.property(
        fc.record({
          kind: fc.integer({ min: RecordKind.entries, max: RecordKind.commit }),
          flags: fc.nat(255),
          payloadLength: fc.nat(64),
          group: fc.nat(0xffffffff),
          seq: fc.nat(0xffffffff),
          a: index,
          b: index,
          c: fc.nat(0xffffffff),
        }),
        fc.nat(recordHeaderBytes * 8 - 1),
        (header, bit) => {
          const buffer = Buffer.alloc(recordHeaderBytes + header.payloadLength, 7);
          const payloadCrc = sealRecord(buffer, 0, header, header.payloadLength);
          const read = emptyRecordHeader();
          expect(readRecordHeader(buffer, 0, buffer.byteLength, read)).toBe(true);
          expect(read).toEqual({ ...header, payloadCrc });
          buffer[bit >> 3]! ^= 1 << (bit & 7);
          expect(readRecordHeader(buffer, 0, buffer.byteLength, read)).toBe(false);
        },
      ),
    );
  });

  it("a checkpoint group reads back as written", () => {
    const group: fc.Arbitrary<CheckpointGroup> = fc.record({
      group: fc.nat(0xffffffff),
      seq: fc.nat(0xffffffff),
      lowTouched: fc.oneof(index, fc.constant(Number.POSITIVE_INFINITY)),
      firstIndex: index,
      lastIndex: index,
      lastTerm: index,
      hardState: fc.record({ term: index, vote: fc.option(nodeId), commit: index, damagedUpTo: index }),
      snapshot: fc.option(
        fc.record({
          fileId: fc.nat(0xffffffff),
          index,
          term: index,
          configuration,
          fileCrc: fc.nat(0xffffffff),
          fileBytes: index,
        }),
      ),
    });
    fc.assert(
      fc.property(fc.array(group, { maxLength: 20 }), (groups) => {
        const writer = new ByteWriter(16);
        for (const item of groups) encodeCheckpointGroup(writer, item);
        const reader = new ByteReader(writer.buffer, 0, writer.length);
        expect(groups.map(() => decodeCheckpointGroup(reader))).toEqual(groups);
        expect(reader.ok).toBe(true);
      }),
    );
  });

  it("a snapshot file reads back as written, and any flipped bit fails it", () => {
    fc.assert(
      fc.property(configuration, fc.uint8Array({ maxLength: 100 }), fc.nat(), (config, data, flip) => {
        const { head, bodyCrc, fileBytes } = encodeSnapshotHead(3, 9, 40, 2, config, data);
        const file = Buffer.concat([head, data]);
        const ref = { fileId: 9, index: 40, term: 2, configuration: config, fileCrc: bodyCrc, fileBytes };
        expect(decodeSnapshotFile(file, ref, 3)).toEqual({ configuration: config, data: Buffer.from(data) });
        const bit = flip % (file.byteLength * 8);
        file[bit >> 3]! ^= 1 << (bit & 7);
        expect(typeof decodeSnapshotFile(file, ref, 3)).toBe("string");
      }),
    );
  });
});
