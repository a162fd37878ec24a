/**
 * Strings as callers send them. A lone UTF-16 surrogate (JSON can carry one as "\ud800") is no character:
 * protobuf's UTF-8 cannot carry it, two of them can pair up into one character after FF1, and as UTF-8 it
 * turns into U+FFFD, so two different values would give one token. Such strings are refused.
 */
export const isWellFormed = (text: string): boolean => (text as string & { isWellFormed(): boolean }).isWellFormed();
