// topic -> partition: the top 16 bits of XXH3-64 (seed 0) of the topic's UTF-8 bytes, so a
// region has 65,536 partitions (DESIGN.md). Every router and client must compute the same
// value: the test vectors in partition.test.ts were checked against `xxhsum -H3`.
import { xxh3 } from "@node-rs/xxhash";

/** A partition number in [0, 65536). */
export type PartitionId = number & { readonly __brand: "PartitionId" };

export const partitionCount = 65_536;

/** The partition of a topic given as its UTF-8 bytes (use `checkTopic` first). */
export function partitionOfBytes(topicBytes: Uint8Array): PartitionId {
  return Number(xxh3.xxh64(topicBytes) >> 48n) as PartitionId;
}

/** The partition of a topic name. The name is not validated here: see `checkTopic`. */
export function partitionOf(topic: string): PartitionId {
  return Number(xxh3.xxh64(topic) >> 48n) as PartitionId;
}
