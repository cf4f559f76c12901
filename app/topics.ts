/**
 * The companion's handlers for `app` messages the hub sends over the config
 * group, by topic. Each area that sends the phone something (recovery escrow,
 * OTA outcomes, ...) adds its entry to APP_TOPICS; the handler keeps the
 * payload under the app's directory and returns the line the CLI prints.
 */
import type { DurableFs } from '../hw/os/fs.js';
import type { E2eeCrypto } from './e2ee-crypto.js';
import { OTA_APP_TOPICS } from './ota-reports.js';
import { RECOVERY_TOPICS } from './recovery.js';

export interface AppTopicContext {
  /** The app's state directory (`--dir`). */
  readonly dir: string;
  readonly fs: DurableFs;
}

export interface AppTopic {
  readonly topic: string;
  readonly handle: (ctx: AppTopicContext, body: Uint8Array) => Promise<string>;
}

/** Areas append `{ topic: '<topic>', handle: ... }` here. */
export const APP_TOPICS: readonly AppTopic[] = [
  // storage: phone-unlock key and recovery escrow (app/recovery.ts)
  ...RECOVERY_TOPICS,
  // ota: update outcomes (app/ota-reports.ts; `vigil app updates` prints them)
  ...OTA_APP_TOPICS,
];

export function registerAppTopics(
  crypto: E2eeCrypto,
  ctx: AppTopicContext,
  topics: readonly AppTopic[] = APP_TOPICS,
): void {
  for (const t of topics) crypto.onApp(t.topic, (body) => t.handle(ctx, body));
}
