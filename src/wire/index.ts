// Wire: Neuron's frames (Avro, versioned), their codec, and length-prefixed framing.

export { BoundExceeded, boundedArrayType, boundedStringMapType } from "./avro-bounded.ts";
export {
  type DecodeResult,
  decodeFrame,
  type EncodeResult,
  encodeFrame,
  FrameDecoder,
  FrameEncoder,
  type FrameSink,
  frameHeaderBytes,
} from "./codec.ts";
export { frameTooLarge, malformed, type WireError } from "./errors.ts";
export {
  AvroReader,
  headersBytes,
  longBytes,
  noHeaders,
  utf8Length,
  writeHeaders,
  writeLong,
  writeString,
} from "./hot-frames.ts";
export {
  type Ack,
  type DeclareTopic,
  type Deliver,
  type Drain,
  type ErrorCode,
  errorCodes,
  type Forward,
  type ForwardResult,
  type Frame,
  type FrameKind,
  type Goodbye,
  type Headers,
  type Hello,
  headersMax,
  type Leader,
  type Message,
  type Ping,
  type Pong,
  type Publish,
  type RaftBatch as RaftBatchFrame,
  type Refusal,
  type Subscribe,
  type Subscribed,
  type Sync,
  type SyncReply,
  type TopicKind,
  type Unsubscribe,
  wireVersion,
} from "./schema.ts";
