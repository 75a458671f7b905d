// What one router sends another in one go: every Raft message of every group they share,
// with heartbeats coalesced (CockroachDB, Redpanda): a heartbeat or its response is a few
// numbers per group in one list, not a Message each. An empty batch is the router-level
// liveness beat that lets quiesced groups notice a dead leader (multi-raft.ts).
//
// Invariant: `toBatches` then `fromBatch` gives back the same messages (heartbeats first,
// then the others in their original order): coalescing changes encoding, never meaning.
import type { GroupId, NodeId } from "../storage/index.ts";
import { emptyMessage, type Message } from "./types.ts";

/** A leader's heartbeat to one group's follower. */
export interface Beat {
  readonly group: GroupId;
  readonly term: number;
  readonly commit: number;
  readonly context: number;
  readonly quiesce: boolean;
}

/** A follower's answer to a Beat. */
export interface BeatResponse {
  readonly group: GroupId;
  readonly term: number;
  readonly context: number;
}

export interface RaftBatch {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly beats: readonly Beat[];
  readonly beatResponses: readonly BeatResponse[];
  /** Every other message, in the order the groups produced them. */
  readonly messages: readonly Message[];
}

/** Groups `messages` (all from `from`) into one batch per destination router. */
export function toBatches(from: NodeId, messages: readonly Message[]): Map<NodeId, RaftBatch> {
  const batches = new Map<NodeId, { beats: Beat[]; beatResponses: BeatResponse[]; messages: Message[] }>();
  for (const message of messages) {
    let batch = batches.get(message.to);
    if (batch === undefined) {
      batch = { beats: [], beatResponses: [], messages: [] };
      batches.set(message.to, batch);
    }
    if (message.type === "heartbeat") {
      batch.beats.push({
        group: message.group,
        term: message.term,
        commit: message.commit,
        context: message.context,
        quiesce: message.quiesce,
      });
    } else if (message.type === "heartbeatResponse") {
      batch.beatResponses.push({ group: message.group, term: message.term, context: message.context });
    } else {
      batch.messages.push(message);
    }
  }
  const result = new Map<NodeId, RaftBatch>();
  for (const [to, batch] of batches) result.set(to, { from, to, ...batch });
  return result;
}

/** Expands a batch back into messages: heartbeats and responses first (they are never queued behind data). */
export function fromBatch(batch: RaftBatch): Message[] {
  const messages: Message[] = [];
  for (const beat of batch.beats) {
    messages.push({
      ...emptyMessage,
      type: "heartbeat",
      group: beat.group,
      from: batch.from,
      to: batch.to,
      term: beat.term,
      commit: beat.commit,
      context: beat.context,
      quiesce: beat.quiesce,
    });
  }
  for (const response of batch.beatResponses) {
    messages.push({
      ...emptyMessage,
      type: "heartbeatResponse",
      group: response.group,
      from: batch.from,
      to: batch.to,
      term: response.term,
      context: response.context,
    });
  }
  for (const message of batch.messages) messages.push(message);
  return messages;
}

export function batchIsEmpty(batch: RaftBatch): boolean {
  return batch.beats.length === 0 && batch.beatResponses.length === 0 && batch.messages.length === 0;
}
