/**
 * Zeroing the Buffers that hold secrets, named by path: 'plaintext' is a field of the value itself;
 * 'results.ok.plaintext' walks into each element of an array on the way (a batch's answers). A path
 * that leads nowhere (a field left out, an item that failed) zeroes nothing.
 */
export function zeroFields(value: unknown, paths: readonly string[] | undefined): void {
  for (const path of paths ?? []) zeroAt(value, segmentsOf(path), 0);
}

/** Each path split once: the paths are the operations' declared ones, a fixed few. */
const segments = new Map<string, readonly string[]>();
function segmentsOf(path: string): readonly string[] {
  let split = segments.get(path);
  if (!split) segments.set(path, (split = path.split('.')));
  return split;
}

function zeroAt(value: unknown, path: readonly string[], depth: number): void {
  if (Array.isArray(value)) {
    for (const element of value) zeroAt(element, path, depth);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const next = (value as Record<string, unknown>)[path[depth]!];
  if (depth === path.length - 1) {
    if (Buffer.isBuffer(next)) next.fill(0);
  } else {
    zeroAt(next, path, depth + 1);
  }
}
