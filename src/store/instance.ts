// This process among the instances sharing a store: it names the connection slots it holds and
// the messages it publishes (and is logged at store_connected, so an operator can tell whose
// slots a Redis holds).
import { randomBytes } from 'node:crypto';

export const INSTANCE_ID = randomBytes(6).toString('hex');
