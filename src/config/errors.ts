/** A config that cannot run: the CLI prints `message` and exits 2. Never carries a secret value. */
export class ConfigError extends Error {
  constructor(
    message: string,
    /** Key path such as `accounts[0].email`, or null when the whole file is at fault. */
    readonly path: string | null = null,
  ) {
    super(path ? `config error at ${path}: ${message}` : `config error: ${message}`);
    this.name = 'ConfigError';
  }
}
