// `npx tsx bench/fleet.ts`: the fleet scenario alone (bench/scenarios/fleet.ts), for a machine
// where the whole `npm run bench` would take too long; prints its table and its figures as JSON.
// It runs the built dist/: `npm run build` first.
import { fleetScenario, fleetTable } from './scenarios/fleet.js';

const r = await fleetScenario((l) => process.stderr.write(`bench: ${l}\n`));
process.stdout.write(`${fleetTable(r)}\n\n${JSON.stringify({ ...r, peaks: undefined })}\n`);
