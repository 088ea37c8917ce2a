// Runs once before the test workers start: builds dist/ (when the sources are newer) so the
// test files that run the built CLI never build it concurrently with each other.
import { buildDist } from './helpers/cli.js';

export default function setup(): void {
  buildDist();
}
