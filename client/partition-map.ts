// What the client knows of where partitions are led: partition -> leader router, and where each
// such router serves clients. Learned from the routers' Leader frames (a router names the
// leader after it passed one of the client's requests on to it) and forgotten when the link to
// a router breaks, so the partitions it led go back through the client's home router (which
// forwards them to their new leaders and names those in turn).
//
// Invariant: `partitions` of a router in `byRouter` are exactly the partitions whose entry in
// `leaders` names it. Bounds: at most 65,536 partitions (one entry each) and `routersMax`
// routers; a Leader frame naming one router too many is not learned (its partitions keep
// going through the home router).
import type { Address } from "../src/axon/index.ts";
import { partitionCount } from "../src/partitions/index.ts";

interface RouterEntry {
  address: Address;
  readonly partitions: Set<number>;
}

export class PartitionMap {
  private readonly routersMax: number;
  private readonly leaders = new Map<number, string>();
  private readonly byRouter = new Map<string, RouterEntry>();

  constructor(routersMax: number) {
    this.routersMax = routersMax;
  }

  /** The leader of `partition` as last learned, if any. */
  leaderOf(partition: number): string | undefined {
    return this.leaders.get(partition);
  }

  /** Where `router` serves clients, while it leads a partition known here. */
  addressOf(router: string): Address | undefined {
    return this.byRouter.get(router)?.address;
  }

  /** Partitions known to be led by `router`. */
  partitionsLedBy(router: string): number {
    return this.byRouter.get(router)?.partitions.size ?? 0;
  }

  get size(): number {
    return this.leaders.size;
  }

  /** `router` (at `address`) leads `partition`. False if not learned (out of range, too many routers). */
  learn(partition: number, router: string, address: Address): boolean {
    if (!Number.isInteger(partition) || partition < 0 || partition >= partitionCount) return false;
    let entry = this.byRouter.get(router);
    if (entry === undefined) {
      if (this.byRouter.size >= this.routersMax) return false;
      entry = { address, partitions: new Set() };
      this.byRouter.set(router, entry);
    }
    entry.address = address;
    const previous = this.leaders.get(partition);
    if (previous !== undefined && previous !== router) this.drop(previous, partition);
    this.leaders.set(partition, router);
    entry.partitions.add(partition);
    return true;
  }

  /** `router` is out of reach: every partition it led is unknown again. */
  forget(router: string): void {
    const entry = this.byRouter.get(router);
    if (entry === undefined) return;
    for (const partition of entry.partitions) this.leaders.delete(partition);
    this.byRouter.delete(router);
  }

  private drop(router: string, partition: number): void {
    const entry = this.byRouter.get(router);
    if (entry === undefined) return;
    entry.partitions.delete(partition);
    if (entry.partitions.size === 0) this.byRouter.delete(router);
  }
}
