// The Neuron client library.
export type {
  ClientEvent,
  ConnectOptions,
  MessageHandler,
  ReceivedMessage,
  SubscribeOptions,
  Subscription,
} from "./api.ts";
export { Client, clientVersion, connect } from "./client.ts";
export { NeuronError, type NeuronErrorCode } from "./errors.ts";
