/** A config that cannot run: the CLI prints `message` and exits 2. Never carries a secret value. */
export class ConfigError extends Error {
  constructor(
    /** Why, without the path (what an API answer or an import row shows next to its own key). */
    readonly reason: string,
    /** Key path such as `accounts[0].email`, or null when the whole file is at fault. */
    readonly path: string | null = null,
  ) {
    super(path ? `config error at ${path}: ${reason}` : `config error: ${reason}`);
    this.name = 'ConfigError';
  }
}
