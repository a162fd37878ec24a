/** Globs in a policy: `*` stands for any run of characters (dots and colons too); everything else is literal. */
export function globMatcher(glob: string): (value: string) => boolean {
  if (glob === '*') return () => true;
  if (!glob.includes('*')) return (value) => value === glob;
  const pattern = new RegExp(`^${glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
  return (value) => pattern.test(value);
}

/** A matcher for any of the globs. */
export function anyGlob(globs: readonly string[]): (value: string) => boolean {
  const matchers = globs.map(globMatcher);
  return (value) => matchers.some((m) => m(value));
}
