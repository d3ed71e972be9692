/**
 * Config errors: every problem found in one file, each with its position, so a user fixes them all
 * in one pass instead of one per restart.
 */

export interface ConfigIssue {
  /** Config file the problem is in. */
  readonly file: string;
  /** 1-based line and column; 0 when the problem concerns the whole file (e.g. it cannot be read). */
  readonly line: number;
  readonly col: number;
  /** Where in the document, e.g. `routes[2].upstream`; '' for the document itself. */
  readonly path: string;
  /** What is wrong and what was expected. */
  readonly message: string;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';

  constructor(
    readonly issues: readonly ConfigIssue[],
    /** The file's text, when it could be read: lets `formatConfigErrors` show the offending line. */
    readonly source?: string,
  ) {
    super(summarise(issues));
  }
}

function summarise(issues: readonly ConfigIssue[]): string {
  const first = issues[0];
  if (first === undefined) return 'invalid configuration';
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  return `${locate(first)}: ${first.message}${more}`;
}

function locate(issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.col}` : issue.file;
  return issue.path === '' ? where : `${where}: ${issue.path}`;
}

/**
 * One block per issue: `file:line:col: path: message`, then the source line with a caret under the
 * column when the source is known. Issues come in file order.
 */
export function formatConfigErrors(err: ConfigError): string {
  const lines = err.source?.split(/\r?\n/);
  const out: string[] = [];
  for (const issue of err.issues) {
    out.push(`${locate(issue)}: ${issue.message}`);
    const text = lines?.[issue.line - 1];
    if (issue.line > 0 && text !== undefined) {
      const gutter = String(issue.line).padStart(5);
      out.push(`${gutter} | ${text}`);
      out.push(`${' '.repeat(gutter.length)} | ${' '.repeat(Math.max(0, issue.col - 1))}^`);
    }
  }
  const n = err.issues.length;
  out.push(`${n} error${n === 1 ? '' : 's'} in ${err.issues[0]?.file ?? 'configuration'}`);
  return out.join('\n') + '\n';
}
