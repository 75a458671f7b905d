// Errors for topic names. A topic comes from outside (a client, a CLI argument, a frame),
// so every rule it breaks gets its own tag and a message a person can act on.

export type TopicError =
  | { readonly tag: "TopicEmpty"; readonly message: string }
  | {
      readonly tag: "TopicTooLong";
      readonly message: string;
      readonly bytes: number;
      readonly limitBytes: number;
    }
  | {
      readonly tag: "TopicBadCharacter";
      readonly message: string;
      readonly character: string;
      readonly position: number;
    }
  | { readonly tag: "TopicEmptySegment"; readonly message: string };
