// Checks of numeric options shared by the library's layers, with errors that name the option.

/** `value` if it is a positive integer (non-negative with allowZero), else a RangeError naming `name`. */
export function checkPositiveInteger(name: string, value: number, allowZero = false): number {
  if (!Number.isInteger(value) || value < (allowZero ? 0 : 1)) throw new RangeError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${value}`);
  return value;
}

/** `value` if it is a non-negative integer, else a RangeError naming `name`. */
export function checkNonNegativeInteger(name: string, value: number): number {
  return checkPositiveInteger(name, value, true);
}
