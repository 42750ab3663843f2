// How linking shows long numbers: a fingerprint or safety number in groups of five digits, as
// people read them out.

/** `number`'s digits in groups of five (spaces in it are ignored). */
export function digitGroups(number: string): string[] {
  const digits = number.replace(/\s+/g, '');
  return digits.match(/.{1,5}/g) ?? [digits];
}

/** A device id as people can tell devices apart by it: its first eight characters. */
export function shortDevice(device: string): string {
  return device.slice(0, 8);
}
