/** Length-prefixed frames for the pipe transport: u32 length of what follows, u32 id, u8 tag, payload. */
const HEADER = 9;

/** Frame tags from the child: a signature, an error message, or (once, id 0) ready to sign. Requests carry the key index. */
export const TAG = { ok: 0, error: 1, ready: 2 } as const;

export function frame(id: number, tag: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER + payload.byteLength);
  out.writeUInt32LE(payload.byteLength + 5, 0);
  out.writeUInt32LE(id, 4);
  out[8] = tag;
  out.set(payload, HEADER);
  return out;
}

/** Feeds stream chunks in, calls onFrame once per complete frame (the payload is a view: copy to keep it). */
export function frameReader(onFrame: (id: number, tag: number, payload: Buffer) => void): (chunk: Buffer) => void {
  let buffered: Buffer = Buffer.alloc(0);
  return (chunk) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    let at = 0;
    while (buffered.length - at >= 4) {
      const end = at + 4 + buffered.readUInt32LE(at);
      if (buffered.length < end) break;
      onFrame(buffered.readUInt32LE(at + 4), buffered[at + 8]!, buffered.subarray(at + HEADER, end));
      at = end;
    }
    buffered = buffered.subarray(at);
  };
}

/** Writes frames, batched per tick: one write (one syscall) per burst instead of one per frame. */
export function frameWriter(stream: NodeJS.WritableStream): (id: number, tag: number, payload: Uint8Array) => void {
  let batch: Buffer[] = [];
  return (id, tag, payload) => {
    if (batch.length === 0) {
      process.nextTick(() => {
        stream.write(batch.length === 1 ? batch[0]! : Buffer.concat(batch));
        batch = [];
      });
    }
    batch.push(frame(id, tag, payload));
  };
}
