// Prometheus metrics of one router, for GET /metrics (DESIGN.md: metrics listener).
//
// Every value is read at scrape time from one snapshot of the router's status (prom-client
// `collect()` callbacks), so the message path counts exactly what it counted before and does
// no work for metrics. Each router has its own `Registry`, never prom-client's global one: a
// test process may run many routers, and each must report only its own numbers.
//
// Invariants: every name starts with `neuron_`, counters end in `_total`, and a unit ends the
// name where there is one (`_seconds`, `_bytes`, `_entries`). One snapshot serves a whole
// scrape (`render()` pins it), so the values of one scrape agree with each other.
// Traps: the snapshot is read from `Router.status()`, whose groups list holds the first 64
// groups and the controller only, so `neuron_raft_replica_lag_max_entries` covers those. The
// process metrics (`processMetrics`, on by default) start prom-client's event-loop monitor
// and GC observer, which live as long as the process: one set per router started.
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import type { MemberState } from "../membership/index.ts";
import { controllerGroup } from "../partitions/index.ts";

/** What the metrics read: the numbers of `Router.status()`, typed (see `metricsSnapshotOf`). */
export interface MetricsSnapshot {
  readonly id: string;
  readonly region: string;
  readonly version: string;
  readonly clients: number;
  readonly subscriptions: number;
  /** The client sessions' counters (`Router.counters`). */
  readonly session: {
    readonly published: number;
    readonly delivered: number;
    readonly refused: number;
    readonly slowConsumers: number;
  };
  /** Members of the membership view by state; every state of `MemberState` is present. */
  readonly members: Readonly<Record<string, number>>;
  readonly mesh: MeshSnapshot;
}

/** The region's share of the snapshot (`Region.status()`); zeros when the router has none. */
export interface MeshSnapshot {
  readonly rosterSize: number;
  readonly drainingRouters: number;
  readonly activePartitions: number;
  readonly partitionsHeld: number;
  readonly partitionsLed: number;
  /** This router's Raft role in the controller group, or null if it does not replicate it. */
  readonly controllerRole: string | null;
  /** True when the controller group says it is a learner here (never a voter). */
  readonly controllerLearner: boolean;
  readonly controllerLeader: string | null;
  /** Entries the furthest-behind replica of a listed group this router leads is missing. */
  readonly replicaLagMaxEntries: number;
  readonly messages: {
    readonly stored: number;
    readonly ephemeral: number;
    readonly deliveredLocal: number;
    readonly deliversSent: number;
    readonly deliversDropped: number;
    readonly deliversReceived: number;
  };
  readonly requests: {
    readonly requests: number;
    readonly forwards: number;
    readonly retries: number;
    readonly forwardedToUs: number;
    readonly deadlinesMissed: number;
  };
  readonly raft: {
    readonly groups: number;
    readonly awake: number;
    readonly rounds: number;
    readonly syncs: number;
    readonly batchesSent: number;
    readonly batchesReceived: number;
    readonly messagesSent: number;
  };
  readonly links: {
    readonly dials: number;
    readonly dialFailures: number;
    readonly droppedNoLink: number;
    readonly droppedBackpressure: number;
    readonly droppedOversized: number;
  };
}

/** Every member state, so a state with no members still shows as 0. */
const memberStates = Object.keys({ alive: 0, suspect: 0, dead: 0, left: 0 } satisfies Record<MemberState, 0>);

type Json = Readonly<Record<string, unknown>>;

function object(value: unknown): Json {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Json) : {};
}

/** A count from JSON: a finite number >= 0, else 0 (a missing field reads as nothing counted). */
function count(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : 0;
}

function text(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

/**
 * Reads the JSON of `Router.status()` (or of a GET /status answer) into a snapshot. Lenient
 * by design: a field that is missing or of the wrong type reads as 0 or null, so a router of
 * another version still gives a table and a scrape.
 */
export function metricsSnapshotOf(status: unknown): MetricsSnapshot {
  const root = object(status);
  const session = object(root.counters);
  const members: Record<string, number> = Object.fromEntries(memberStates.map((state) => [state, 0]));
  if (Array.isArray(root.members)) {
    for (const member of root.members) {
      const state = text(object(member).state);
      if (state !== null) members[state] = (members[state] ?? 0) + 1;
    }
  }
  const mesh = object(root.mesh);
  const counters = object(mesh.counters);
  const requests = object(mesh.requests);
  const raft = object(mesh.raft);
  const links = object(mesh.links);
  let controller: Json | null = null;
  let lagMax = 0;
  for (const group of Array.isArray(mesh.groups) ? mesh.groups : []) {
    const entry = object(group);
    if (entry.group === controllerGroup) controller = entry;
    if (entry.role !== "leader") continue;
    for (const lag of Object.values(object(entry.lag))) lagMax = Math.max(lagMax, count(lag));
  }
  return {
    id: text(root.id) ?? "",
    region: text(root.region) ?? "",
    version: text(root.version) ?? "",
    clients: count(root.clients),
    subscriptions: count(root.subscriptions),
    session: {
      published: count(session.published),
      delivered: count(session.delivered),
      refused: count(session.refused),
      slowConsumers: count(session.slowConsumers),
    },
    members,
    mesh: {
      rosterSize: Array.isArray(mesh.roster) ? mesh.roster.length : 0,
      drainingRouters: Array.isArray(mesh.draining) ? mesh.draining.length : 0,
      activePartitions: count(mesh.activePartitions),
      partitionsHeld: count(mesh.partitionsHeld),
      partitionsLed: count(mesh.partitionsLed),
      controllerRole: controller === null ? null : text(controller.role),
      controllerLearner: controller?.learner === true,
      controllerLeader: text(mesh.controllerLeader),
      replicaLagMaxEntries: lagMax,
      messages: {
        stored: count(counters.storedMessages),
        ephemeral: count(counters.ephemeralMessages),
        deliveredLocal: count(counters.deliveredLocal),
        deliversSent: count(counters.deliversSent),
        deliversDropped: count(counters.deliversDropped),
        deliversReceived: count(counters.deliversReceived),
      },
      requests: {
        requests: count(requests.requests),
        forwards: count(requests.forwards),
        retries: count(requests.retries),
        forwardedToUs: count(requests.forwardedToUs),
        deadlinesMissed: count(requests.deadlinesMissed),
      },
      raft: {
        groups: count(raft.groups),
        awake: count(raft.awake),
        rounds: count(raft.rounds),
        syncs: count(raft.syncs),
        batchesSent: count(raft.batchesSent),
        batchesReceived: count(raft.batchesReceived),
        messagesSent: count(raft.messagesSent),
      },
      links: {
        dials: count(links.dials),
        dialFailures: count(links.dialFailures),
        droppedNoLink: count(links.droppedNoLink),
        droppedBackpressure: count(links.droppedBackpressure),
        droppedOversized: count(links.droppedOversized),
      },
    },
  };
}

/** One metric: its name, what it means, and how to read it from a snapshot. */
interface Definition {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge";
  /** For a labelled metric: the label's name; `read` then returns a value per label value. */
  readonly label?: string;
  readonly read: (snapshot: MetricsSnapshot) => number | Readonly<Record<string, number>>;
}

const definitions: readonly Definition[] = [
  // Clients of this router.
  {
    name: "neuron_messages_published_total",
    type: "counter",
    help: "Publishes from this router's clients that passed validation and went to their partition's leader.",
    read: (s) => s.session.published,
  },
  {
    name: "neuron_messages_delivered_total",
    type: "counter",
    help: "Messages this router wrote to its clients' subscriptions.",
    read: (s) => s.session.delivered,
  },
  {
    name: "neuron_requests_refused_total",
    type: "counter",
    help: "Client requests this router answered with a Refusal (bad input, no leader in time, limits, ...).",
    read: (s) => s.session.refused,
  },
  {
    name: "neuron_slow_consumers_total",
    type: "counter",
    help: "Clients disconnected because more than limits.slow_consumer_bytes of messages waited for them.",
    read: (s) => s.session.slowConsumers,
  },
  {
    name: "neuron_clients",
    type: "gauge",
    help: "Client connections open on this router now.",
    read: (s) => s.clients,
  },
  {
    name: "neuron_subscriptions",
    type: "gauge",
    help: "Subscriptions of this router's clients now.",
    read: (s) => s.subscriptions,
  },
  // Partitions' messages and their fan-out.
  {
    name: "neuron_messages_stored_total",
    type: "counter",
    help: "Persistent messages applied to the partition logs this router replicates (leader or follower).",
    read: (s) => s.mesh.messages.stored,
  },
  {
    name: "neuron_messages_ephemeral_total",
    type: "counter",
    help: "Ephemeral messages fanned out, never stored, by partitions this router leads.",
    read: (s) => s.mesh.messages.ephemeral,
  },
  {
    name: "neuron_deliveries_local_total",
    type: "counter",
    help: "Messages of partitions this router leads handed to its own subscribers.",
    read: (s) => s.mesh.messages.deliveredLocal,
  },
  {
    name: "neuron_deliveries_sent_total",
    type: "counter",
    help: "Deliver frames sent over the links to other interested routers.",
    read: (s) => s.mesh.messages.deliversSent,
  },
  {
    name: "neuron_deliveries_dropped_total",
    type: "counter",
    help: "Deliver frames dropped because the link to an interested router was down or full.",
    read: (s) => s.mesh.messages.deliversDropped,
  },
  {
    name: "neuron_deliveries_received_total",
    type: "counter",
    help: "Deliver frames received from partition leaders on other routers.",
    read: (s) => s.mesh.messages.deliversReceived,
  },
  // Requests to partition leaders.
  {
    name: "neuron_requests_total",
    type: "counter",
    help: "Requests (publish, declare, interest) this router sent toward a group's leader, here or elsewhere.",
    read: (s) => s.mesh.requests.requests,
  },
  {
    name: "neuron_requests_forwarded_total",
    type: "counter",
    help: "Requests forwarded over the links to a leader on another router.",
    read: (s) => s.mesh.requests.forwards,
  },
  {
    name: "neuron_requests_forwarded_to_us_total",
    type: "counter",
    help: "Requests other routers forwarded to this one as a group's leader.",
    read: (s) => s.mesh.requests.forwardedToUs,
  },
  {
    name: "neuron_request_retries_total",
    type: "counter",
    help: "Second and later attempts of a request (no leader known, leader moved, forward timed out).",
    read: (s) => s.mesh.requests.retries,
  },
  {
    name: "neuron_request_deadlines_missed_total",
    type: "counter",
    help: "Requests that found no leader before their deadline and failed.",
    read: (s) => s.mesh.requests.deadlinesMissed,
  },
  // Cluster shape as this router sees it.
  {
    name: "neuron_members",
    type: "gauge",
    label: "state",
    help: "Members of this router's membership view, by state (alive, suspect, dead, left).",
    read: (s) => s.members,
  },
  {
    name: "neuron_roster_routers",
    type: "gauge",
    help: "Routers in the controller's roster, as this router's replica of it says.",
    read: (s) => s.mesh.rosterSize,
  },
  {
    name: "neuron_roster_draining_routers",
    type: "gauge",
    help: "Routers of the roster being drained of their partitions.",
    read: (s) => s.mesh.drainingRouters,
  },
  {
    name: "neuron_partitions_active",
    type: "gauge",
    help: "Partitions the controller has activated so far, cluster-wide.",
    read: (s) => s.mesh.activePartitions,
  },
  {
    name: "neuron_partitions_held",
    type: "gauge",
    help: "Partitions this router replicates (leader or follower).",
    read: (s) => s.mesh.partitionsHeld,
  },
  {
    name: "neuron_partitions_led",
    type: "gauge",
    help: "Partitions this router leads.",
    read: (s) => s.mesh.partitionsLed,
  },
  {
    name: "neuron_controller_leader",
    type: "gauge",
    help: "1 if this router leads the controller group, else 0.",
    read: (s) => (s.mesh.controllerRole === "leader" ? 1 : 0),
  },
  // Raft and the links.
  {
    name: "neuron_raft_groups",
    type: "gauge",
    help: "Raft groups (partitions and the controller) open on this router.",
    read: (s) => s.mesh.raft.groups,
  },
  {
    name: "neuron_raft_groups_awake",
    type: "gauge",
    help: "Raft groups not quiesced: ticked every round.",
    read: (s) => s.mesh.raft.awake,
  },
  {
    name: "neuron_raft_replica_lag_max_entries",
    type: "gauge",
    help: "Log entries the furthest-behind replica of a group this router leads is missing (groups listed in /status).",
    read: (s) => s.mesh.replicaLagMaxEntries,
  },
  {
    name: "neuron_raft_rounds_total",
    type: "counter",
    help: "Rounds of the multi-Raft loop (persist, sync, send, apply) that had work.",
    read: (s) => s.mesh.raft.rounds,
  },
  {
    name: "neuron_raft_syncs_total",
    type: "counter",
    help: "fdatasync calls of the Raft store: one per round that wrote, for every group at once.",
    read: (s) => s.mesh.raft.syncs,
  },
  {
    name: "neuron_raft_batches_sent_total",
    type: "counter",
    help: "Raft batches (many groups' messages for one peer) sent.",
    read: (s) => s.mesh.raft.batchesSent,
  },
  {
    name: "neuron_raft_batches_received_total",
    type: "counter",
    help: "Raft batches received from peers.",
    read: (s) => s.mesh.raft.batchesReceived,
  },
  {
    name: "neuron_raft_messages_sent_total",
    type: "counter",
    help: "Raft messages sent, heartbeats not included.",
    read: (s) => s.mesh.raft.messagesSent,
  },
  {
    name: "neuron_link_dials_total",
    type: "counter",
    help: "Connections this router dialled to other routers' links.",
    read: (s) => s.mesh.links.dials,
  },
  {
    name: "neuron_link_dial_failures_total",
    type: "counter",
    help: "Dials to other routers' links that failed.",
    read: (s) => s.mesh.links.dialFailures,
  },
  {
    name: "neuron_link_drops_total",
    type: "counter",
    label: "reason",
    help: "Raft batches or frames the links dropped: no_link (none up), backpressure (queue full), oversized (past the frame limit).",
    read: (s) => ({
      no_link: s.mesh.links.droppedNoLink,
      backpressure: s.mesh.links.droppedBackpressure,
      oversized: s.mesh.links.droppedOversized,
    }),
  },
];

export interface RouterMetricsOptions {
  /** prom-client's process and Node.js metrics (CPU seconds, memory bytes, event-loop lag), prefixed `neuron_`. Default true. */
  readonly processMetrics?: boolean;
}

/** One router's registry; `render()` answers GET /metrics. */
export class RouterMetrics {
  readonly registry = new Registry();
  private readonly snapshot: () => MetricsSnapshot;
  /** The snapshot of the scrape under way (see `render`). */
  private pinned: MetricsSnapshot | undefined;

  constructor(snapshot: () => MetricsSnapshot, options: RouterMetricsOptions = {}) {
    this.snapshot = snapshot;
    const current = () => this.pinned ?? this.snapshot();
    const info = new Gauge({
      name: "neuron_router_info",
      help: "Always 1; labels name this router, its region and its version.",
      labelNames: ["id", "region", "version"],
      registers: [this.registry],
      collect() {
        const s = current();
        info.reset();
        info.set({ id: s.id, region: s.region, version: s.version }, 1);
      },
    });
    for (const definition of definitions) this.register(definition, current);
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: "neuron_" });
  }

  /** Content type of `render()`'s text (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in Prometheus text format, from one snapshot taken now. */
  async render(): Promise<string> {
    this.pinned = this.snapshot();
    try {
      return await this.registry.metrics();
    } finally {
      this.pinned = undefined;
    }
  }

  private register(definition: Definition, current: () => MetricsSnapshot): void {
    const { name, help, label } = definition;
    const labelNames = label === undefined ? [] : [label];
    const fill = (set: (labels: Record<string, string>, value: number) => void, reset: () => void) => {
      const value = definition.read(current());
      reset();
      if (typeof value === "number") {
        if (label !== undefined) throw new Error(`metric ${name}: labelled by ${label} but read one value`);
        set({}, value);
        return;
      }
      if (label === undefined) throw new Error(`metric ${name}: read labelled values but has no label`);
      for (const [labelValue, count] of Object.entries(value)) set({ [label]: labelValue }, count);
    };
    if (definition.type === "counter") {
      const counter: Counter<string> = new Counter({
        name,
        help,
        labelNames,
        registers: [this.registry],
        collect: () =>
          fill(
            (labels, value) => counter.inc(labels, value),
            () => counter.reset(),
          ),
      });
    } else {
      const gauge: Gauge<string> = new Gauge({
        name,
        help,
        labelNames,
        registers: [this.registry],
        collect: () =>
          fill(
            (labels, value) => gauge.set(labels, value),
            () => gauge.reset(),
          ),
      });
    }
  }
}

/** The metrics of a router: its status, read at each scrape. */
export function routerMetrics(status: () => unknown, options: RouterMetricsOptions = {}): RouterMetrics {
  return new RouterMetrics(() => metricsSnapshotOf(status()), options);
}
