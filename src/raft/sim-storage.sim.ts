// How the Raft simulator's routers keep their logs (simulation.sim.ts): `memorySimStorage`
// keeps everything through crashes (the protocol alone under test), `diskSimStorage` runs the
// production disk store over a SimDisk per router, with slow fsyncs, torn writes at crashes
// and bit flips on one router's files.
import { type SeededRandom, type SimClock, SimDisk } from "../sim/index.ts";
import { type LogStore, MemoryStore, type NodeId, openDiskStore } from "../storage/index.ts";

/** How a simulated router keeps its log: opened at start and at each restart. */
export interface SimStorage {
  open(router: NodeId): Promise<LogStore>;
  /** The router's process died: unsynced writes are lost (torn, if the storage models it). */
  crash(router: NodeId): void;
  /** Whether the router has an fsync in progress (a crash now would tear it). */
  syncing(router: NodeId): boolean;
  /** Damages one stored record of a stopped router; returns a description, or null if it cannot. */
  corrupt(router: NodeId, random: SeededRandom): string | null;
}

/** Stores that survive crashes whole: isolates the protocol from storage faults. */
export function memorySimStorage(): SimStorage {
  const stores = new Map<NodeId, MemoryStore>();
  return {
    open: async (router) => {
      let store = stores.get(router);
      if (store === undefined) {
        store = new MemoryStore();
        stores.set(router, store);
      }
      return store;
    },
    crash: () => {},
    syncing: () => false,
    corrupt: () => null,
  };
}

/**
 * The production disk store over a SimDisk per router. Each fsync takes 0.5-10 ms of simulated
 * time, so a crash can land mid-write: unsynced writes are lost, torn at a random byte. Only
 * one router's disk is ever corrupted in a run (a minority: the fault model Raft promises to
 * survive).
 */
export function diskSimStorage(random: SeededRandom, clock: SimClock): SimStorage {
  const disks = new Map<NodeId, SimDisk>();
  let corrupted: NodeId | null = null;
  const opening = new Set<NodeId>();
  const diskOf = (router: NodeId) => {
    let disk = disks.get(router);
    if (disk === undefined) {
      disk = new SimDisk(random.fork(router));
      disk.holdSyncs();
      const release = () => {
        disk!.releaseSyncs();
        if (!opening.has(router)) disk!.holdSyncs();
        clock.schedule(random.between(0.5, 10), release);
      };
      clock.schedule(1, release);
      disks.set(router, disk);
    }
    return disk;
  };
  return {
    open: async (router) => {
      // Recovery runs at disk speed: the clock may not be running yet (the first start).
      const disk = diskOf(router);
      opening.add(router);
      disk.releaseSyncs();
      try {
        const { store } = await openDiskStore({ fs: disk.session(), dir: "/data", segmentBytes: 64 * 1024 });
        return store;
      } finally {
        opening.delete(router);
        disk.holdSyncs();
      }
    },
    crash: (router) => diskOf(router).crash({ tear: true }),
    syncing: (router) => diskOf(router).heldSyncCount > 0,
    corrupt: (router, pick) => {
      if (corrupted !== null && corrupted !== router) return null;
      const disk = diskOf(router);
      const files = disk.paths().filter((path) => disk.fileSize(path) > 0);
      if (files.length === 0) return null;
      corrupted = router;
      const path = pick.pick(files);
      const offset = pick.nextInt(disk.fileSize(path));
      const bit = pick.nextInt(8);
      disk.flipBit(path, offset, bit);
      return `bit ${bit} of byte ${offset} in ${path}`;
    },
  };
}
