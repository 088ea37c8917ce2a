/** One thing wrong with a config: why, and where (a key path such as `accounts[0].email`, or null). */
export interface ConfigProblem {
  reason: string;
  path: string | null;
  /** The line of relay.yaml the path is written on, when it came from a file. */
  line?: number;
}

const where = (p: ConfigProblem) => `${p.path}${p.line ? ` (line ${p.line})` : ''}`;
const describe = (p: ConfigProblem) => (p.path ? `at ${where(p)}: ${p.reason}` : p.reason);


/**
 * A config that cannot run: the CLI prints `message` and exits 2. Never carries a secret value.
 * It holds every problem found in one pass (`problems`), so an operator fixes them all in one
 * edit instead of meeting them one run at a time.
 */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];

  constructor(
    /** Why, without the path (what an API answer or an import row shows next to its own key). */
    readonly reason: string,
    /** Key path such as `accounts[0].email`, or null when the whole file is at fault. */
    readonly path: string | null = null,
    problems?: readonly ConfigProblem[],
  ) {
    super(
      problems && problems.length > 1
        ? `${problems.length} config errors:\n  ${problems.map(describe).join('\n  ')}`
        : path
          ? `config error at ${where(problems?.[0] ?? { reason, path })}: ${reason}`
          : `config error: ${reason}`,
    );
    this.name = 'ConfigError';
    this.problems = problems && problems.length ? problems : [{ reason, path }];
  }

  /** One error for every problem; with one, the same as `new ConfigError(reason, path)`. */
  static of(problems: readonly ConfigProblem[]): ConfigError {
    if (problems.length === 1) return new ConfigError(problems[0]!.reason, problems[0]!.path, problems);
    // Callers that show `${path}: ${reason}` on one line get the first key, then the others named.
    const [first, ...rest] = problems;
    const reason = [first!.reason, ...rest.map((p) => (p.path ? `${p.path}: ${p.reason}` : p.reason))].join('; ');
    return new ConfigError(reason, first!.path, problems);
  }
}

/** Collects the problems of a pass: `attempt` runs a check and keeps its ConfigError instead of stopping. */
export class ConfigProblems {
  readonly list: ConfigProblem[] = [];

  add(reason: string, path: string | null = null): void {
    this.list.push({ reason, path });
  }

  attempt<T>(check: () => T): T | undefined {
    try {
      return check();
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      this.list.push(...e.problems);
      return undefined;
    }
  }

  throwIfAny(): void {
    if (this.list.length) throw ConfigError.of(this.list);
  }
}
