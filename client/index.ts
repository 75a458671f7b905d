// The Neuron client library.
export {
  Client,
  type ClientEvent,
  type ConnectOptions,
  clientVersion,
  connect,
  type MessageHandler,
  type ReceivedMessage,
  type Subscription,
} from "./client.ts";
export { NeuronError, type NeuronErrorCode } from "./errors.ts";
