import { expect } from 'vitest';
import { RelayError } from '../../src/errors/registry.js';

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

/** Awaits `p`, expects it to reject with an instance of `type` (a RelayError unless told), and returns that error. */
export async function rejection<E extends Error = RelayError>(p: Promise<unknown>, type: abstract new (...args: never[]) => E = RelayError as never): Promise<E> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(type);
    return e as E;
  }
  throw new Error(`expected a ${type.name}, the promise resolved`);
}
