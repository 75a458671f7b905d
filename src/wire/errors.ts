// Errors of the wire format. The decoder never throws: every way a frame can be bad is one of
// these tags, with the numbers a person needs to see what happened.

export type WireError =
  | {
      readonly tag: "FrameTooLarge";
      readonly message: string;
      readonly bytes: number;
      readonly limitBytes: number;
    }
  | { readonly tag: "UnsupportedVersion"; readonly message: string; readonly version: number }
  | { readonly tag: "UnknownFrameKind"; readonly message: string; readonly kind: number }
  | { readonly tag: "MalformedFrame"; readonly message: string };

export function frameTooLarge(bytes: number, limitBytes: number): WireError {
  return {
    tag: "FrameTooLarge",
    message: `frame of ${bytes} bytes exceeds the limit of ${limitBytes} bytes`,
    bytes,
    limitBytes,
  };
}

export function malformed(message: string): WireError {
  return { tag: "MalformedFrame", message: `malformed frame: ${message}` };
}
