// The last lines a child process wrote to one stream, bounded in lines and in line length, so a
// chatty router cannot grow the test process's memory and a failure message stays readable.
// Invariant: lines.length <= linesMax; every stored line is at most lineCharsMax characters plus
// a short marker (longer ones are cut: a very long line keeps its first lineCharsMax
// characters); `partial` (the unterminated end) is bounded the same way.
// Trap: chunks split lines anywhere (even inside a multi-byte character, hence setEncoding on
// the stream, not Buffer.toString per chunk); push() returns only the lines it completed.

export const defaultLinesMax = 200;
export const defaultLineCharsMax = 2000;

export class LineBuffer {
  private readonly linesMax: number;
  private readonly lineCharsMax: number;
  private readonly lines: string[] = [];
  private partial = "";
  /** Lines dropped off the front since the start. */
  private droppedCount = 0;

  constructor(linesMax = defaultLinesMax, lineCharsMax = defaultLineCharsMax) {
    this.linesMax = linesMax;
    this.lineCharsMax = lineCharsMax;
  }

  /** Adds a chunk of text; returns the lines it completed, in order. */
  push(chunk: string): string[] {
    const pieces = (this.partial + chunk).split("\n");
    this.partial = this.cut(pieces.pop() ?? "");
    const completed = pieces.map((line) => this.cut(line));
    for (const line of completed) {
      this.lines.push(line);
      if (this.lines.length > this.linesMax) {
        this.lines.shift();
        this.droppedCount++;
      }
    }
    return completed;
  }

  /** The last `count` lines (the unterminated end included), oldest first, one per line. */
  tail(count = 20): string {
    const all = this.partial === "" ? this.lines : [...this.lines, this.partial];
    const shown = all.slice(-count);
    const hidden = this.droppedCount + all.length - shown.length;
    return (hidden > 0 ? [`[${hidden} earlier lines not shown]`, ...shown] : shown).join("\n");
  }

  private cut(line: string): string {
    return line.length <= this.lineCharsMax
      ? line
      : `${line.slice(0, this.lineCharsMax)} [cut: ${line.length} chars]`;
  }
}
