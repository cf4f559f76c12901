/**
 * What the hub sends: the item kinds, once. The container encodes them as a
 * byte (protocol/container.ts), the relay lists them (protocol/relay-api.ts,
 * which adds `message` for config-group traffic), and each kind is sealed in
 * its own MLS group (GROUP_FOR_ITEM in protocol/mls-profile.ts).
 */
export const ITEM_KINDS = ['clip', 'thumbnail', 'live'] as const;
export type ItemKind = (typeof ITEM_KINDS)[number];
