// Writes the persistent part of a Ready to a store, in the order types.ts prescribes (a
// damaged range dropped, then a received snapshot, then new entries, then the hard state).
// The one place that order lives: the multi-Raft shell, the test harness and the unit tests
// all persist through it. Nothing is durable until the store's next sync().
import type { GroupId, LogStore } from "../storage/index.ts";
import type { Ready } from "./types.ts";

/** Stages `ready`'s writes for `group`; returns whether they must be synced before going on (Ready.mustSync). */
export function persistReady(store: LogStore, group: GroupId, ready: Ready): boolean {
  if (ready.truncateFrom !== 0) store.truncate(group, ready.truncateFrom);
  if (ready.snapshot !== null) store.installSnapshot(group, ready.snapshot);
  if (ready.entries.length > 0) store.append(group, ready.entries);
  if (ready.hardState !== null) store.setHardState(group, ready.hardState);
  return ready.mustSync;
}
