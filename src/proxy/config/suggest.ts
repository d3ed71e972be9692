/** "Did you mean" hints for misspelt keys and names. */

/** Levenshtein distance, with the usual two-row table. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, substitution);
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * The closest candidate when it is plausibly a typo: at most 2 edits and under half the word, or the
 * same word with '-' for '_' / different case.
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  const folded = word.toLowerCase().replaceAll('-', '_');
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    if (candidate.toLowerCase().replaceAll('-', '_') === folded) return candidate;
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= 2 && bestDistance * 2 < Math.max(word.length, best.length) ? best : undefined;
}

export function didYouMean(word: string, candidates: Iterable<string>): string {
  const hint = closest(word, candidates);
  return hint === undefined ? '' : `; did you mean "${hint}"?`;
}
