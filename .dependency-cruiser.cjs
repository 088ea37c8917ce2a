// The layer rules of src/ (docs/architecture.md explains each layer). `npm test` runs
// `depcruise src` first, so an import that points the wrong way fails the build.
//
// A folder may import only folders in a lower tier, never its own tier's other folders nor a
// higher tier: so no two folders import each other (no circle through folders), and the
// protocol package (smtp/) imports nothing else of src/.
/** Bottom to top. Folders in one tier are peers that do not know each other. */
const TIERS = [
  ['smtp'], // the protocol's nouns and rules, shared by both engines
  ['errors'], // the error registry: every failure's code, reply and refusal reason
  ['config', 'obs'], // relay.yaml's schema and loading; logs and metrics
  ['store'], // counters, tokens and accounts kept in SQLite or Redis
  ['routing'], // accounts and which one a session sends through
  ['tokens'], // OAuth2 grants and the token cache
  ['limits'], // sending limits and pauses, counted in the store
  ['upstream'], // the provider-facing engine: SMTP connections, pools, HTTP APIs
  ['relay'], // one transaction relayed step by step, limits and routing applied
  ['inbound'], // the MTA-facing engine: the SMTP server and its sessions
  ['admin'], // the HTTP API, status page and health checks
  ['sandbox'], // fake providers, for the demo and the tests only
  ['app'], // src/app.ts: wires the stages into a running relay
  ['cli'], // the command line
];

const folder = (name) => (name === 'app' ? '^src/app\\.ts$' : `^src/${name}/`);
const any = (names) => `(${names.map(folder).join('|')})`;

const layerRules = TIERS.flatMap((tier, i) =>
  tier.map((name) => {
    const lower = TIERS.slice(0, i).flat();
    const allowed = [name, ...lower];
    return {
      name: `layer-${name}`,
      comment: `src/${name === 'app' ? 'app.ts' : name + '/'} may import only ${lower.length ? lower.join(', ') : 'nothing else of src/'} (lower layers)`,
      severity: 'error',
      from: { path: folder(name) },
      to: { path: '^src/', pathNot: any(allowed) },
    };
  }),
);

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'sandbox-only-for-cli-and-tests',
      comment: 'The fake providers are started by the CLI (demo, sandbox) and the tests, never by the relay itself.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(cli|sandbox)/' },
      to: { path: '^src/sandbox/' },
    },
    {
      name: 'no-circular',
      comment: 'No module imports, through any chain, a module that imports it back.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that resolves to nothing is a typo or a missing dependency.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a layer rule is about knowledge, not about what survives compilation.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
  },
};
