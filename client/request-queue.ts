// The client's requests that wait for an answer, in id order: a ring buffer indexed by id.
// Ids come from one counter (the client's, or one link's), so while any are pending they are
// consecutive and request `id` sits in slot `id & mask`; no hashing, no per-entry allocation,
// and the oldest one is at hand (an Ack settles a prefix, a timeout starts from the oldest).
// `idOf` reads an item's id: the client files each request twice, by its own id and by its id
// on the link it was sent on.
//
// Invariant: every id in [headId, tailId) maps to its request or to a hole (settled out of
// order, by a Refusal); slots outside that range are empty; the request at headId, if any
// request is pending, is present.
// Trap: the range can hold holes, so it may be wider than `size`; it grows when full.

export class RequestQueue<T> {
  private readonly idOf: (item: T) => number;
  private slots: (T | undefined)[];
  private mask: number;
  private headId = 0;
  private tailId = 0;
  private live = 0;

  constructor(idOf: (item: T) => number, initialSlots = 1024) {
    this.idOf = idOf;
    let capacity = 1;
    while (capacity < initialSlots) capacity *= 2;
    this.slots = new Array<T | undefined>(capacity).fill(undefined);
    this.mask = capacity - 1;
  }

  /** Requests pending. */
  get size(): number {
    return this.live;
  }

  /** Adds the next request; its id must follow the last one's (any id when empty). */
  push(request: T): void {
    const id = this.idOf(request);
    if (this.live === 0) {
      this.headId = id;
      this.tailId = id;
    } else if (id !== this.tailId) {
      throw new Error(`request ${id} pushed after ${this.tailId - 1}: request ids must be consecutive`);
    }
    if (this.tailId - this.headId === this.slots.length) this.grow();
    this.slots[id & this.mask] = request;
    this.tailId = id + 1;
    this.live += 1;
  }

  get(id: number): T | undefined {
    return id >= this.headId && id < this.tailId ? this.slots[id & this.mask] : undefined;
  }

  /** The pending request with the lowest id. */
  oldest(): T | undefined {
    return this.live === 0 ? undefined : this.slots[this.headId & this.mask];
  }

  /** Removes a request; returns it, or undefined if it was not pending. */
  remove(id: number): T | undefined {
    const request = this.get(id);
    if (request === undefined) return undefined;
    this.slots[id & this.mask] = undefined;
    this.live -= 1;
    if (this.live === 0) {
      this.headId = this.tailId;
    } else if (id === this.headId) {
      let head = this.headId + 1;
      while (this.slots[head & this.mask] === undefined) head++;
      this.headId = head;
    }
    return request;
  }

  /** The pending requests in id order, as a copy (safe to settle them while iterating). */
  list(): T[] {
    const out: T[] = [];
    for (let id = this.headId; id < this.tailId; id++) {
      const request = this.slots[id & this.mask];
      if (request !== undefined) out.push(request);
    }
    return out;
  }

  private grow(): void {
    const slots = new Array<T | undefined>(this.slots.length * 2).fill(undefined);
    const mask = slots.length - 1;
    for (let id = this.headId; id < this.tailId; id++) slots[id & mask] = this.slots[id & this.mask];
    this.slots = slots;
    this.mask = mask;
  }
}
