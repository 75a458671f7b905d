// What a leader knows of each follower's log (Raft §5.3 nextIndex/matchIndex), and how it
// paces appends to it: etcd's progress states. probe: one append at a time until the match
// point is found; replicate: pipelined appends, bounded by Inflights; snapshot: waiting for
// an install-snapshot to land.
//
// Invariant: match < next. Invariant: in replicate, inflights hold the last index of every
// unacknowledged append, in increasing order.

export type ProgressState = "probe" | "replicate" | "snapshot";

/** A bounded ring of in-flight appends: each slot is (last index, entry bytes). */
export class Inflights {
  private readonly indexes: Float64Array;
  private readonly sizes: Float64Array;
  private start = 0;
  count = 0;
  bytes = 0;
  readonly maxCount: number;
  readonly maxBytes: number;

  constructor(maxCount: number, maxBytes: number) {
    this.maxCount = maxCount;
    this.maxBytes = maxBytes;
    this.indexes = new Float64Array(maxCount);
    this.sizes = new Float64Array(maxCount);
  }

  add(lastIndex: number, bytes: number): void {
    const slot = (this.start + this.count) % this.maxCount;
    this.indexes[slot] = lastIndex;
    this.sizes[slot] = bytes;
    this.count += 1;
    this.bytes += bytes;
  }

  /** Frees every append whose last index is <= `index` (they were acknowledged). */
  freeLE(index: number): void {
    while (this.count > 0 && this.indexes[this.start]! <= index) {
      this.bytes -= this.sizes[this.start]!;
      this.start = (this.start + 1) % this.maxCount;
      this.count -= 1;
    }
    if (this.count === 0) this.start = 0;
  }

  /** Frees the oldest in-flight append (the follower answered a heartbeat: appends were lost). */
  freeFirst(): void {
    if (this.count === 0) return;
    this.bytes -= this.sizes[this.start]!;
    this.start = (this.start + 1) % this.maxCount;
    this.count -= 1;
    if (this.count === 0) this.start = 0;
  }

  full(): boolean {
    return this.count >= this.maxCount || this.bytes >= this.maxBytes;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
    this.bytes = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  /** In snapshot state: the index of the snapshot sent. */
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round (thesis §6.2). */
  recentActive = false;
  /** In probe state: an append is out; wait for its answer (or a heartbeat response). */
  probeSent = false;
  isLearner: boolean;
  readonly inflights: Inflights;

  constructor(next: number, isLearner: boolean, maxInflightMessages: number, maxInflightBytes: number) {
    this.next = next;
    this.isLearner = isLearner;
    this.inflights = new Inflights(maxInflightMessages, maxInflightBytes);
  }

  private resetState(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /** An acknowledgement up to `index`; false if it was stale. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /** Pipelining: after sending entries up to `lastIndex`, assume they land. */
  sentEntries(lastIndex: number, bytes: number): void {
    if (this.state === "replicate") {
      // An append without entries (a commit update) is never acknowledged past `match`, so it
      // would hold its slot until a later entry is acked: with every slot so held, nothing is sent.
      if (lastIndex < this.next) return;
      this.next = lastIndex + 1;
      this.inflights.add(lastIndex, bytes);
    } else if (this.state === "probe") {
      this.probeSent = true;
    }
  }

  /**
   * A rejection of the append after `rejected`; `hint` is the follower's last index. Returns
   * false if the rejection is stale (Raft §5.3: decrement nextIndex and retry, here skipping
   * straight to the follower's end).
   */
  maybeDecreaseTo(rejected: number, hint: number): boolean {
    if (hint < this.match) {
      // The follower no longer holds entries it acknowledged (it dropped a damaged range, see
      // HardState.damagedUpTo): match goes back to what it holds. Only ever delays commit.
      this.match = hint;
      this.next = hint + 1;
      this.probeSent = false;
      return true;
    }
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }
}
