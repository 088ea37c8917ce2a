import { expect } from 'vitest';
import { RelayError } from '../../src/relay/errors.js';

/** Runs `fn`, expects it to throw an instance of `type`, and returns that error for further checks. */
export function thrown<E extends Error>(fn: () => unknown, type: abstract new (...args: never[]) => E): E {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(type);
    return e as E;
  }
  throw new Error(`expected a ${type.name}, nothing was thrown`);
}

/** Awaits `p`, expects it to reject with a RelayError, and returns that error for further checks. */
export async function rejection(p: Promise<unknown>): Promise<RelayError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(RelayError);
    return e as RelayError;
  }
  throw new Error('expected a rejection');
}
