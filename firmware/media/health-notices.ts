/**
 * Sealed health notices to the phones (`hub-health`, protocol/live-control.ts)
 * from the media pipeline's events: the camera failed (unplugged, or the
 * pipeline gave up), it came back (`recovered`), or the encoder fell back to
 * software. Each condition is sent once when it starts, not on every event.
 *
 * "Storage locked" is in the format but not sent from here: while the data
 * volume is locked the hub has no MLS state to seal with; the phone learns of
 * a locked hub from the offline alert (no hub-alive beats) and the unlock flow.
 */
import type { Clock } from '../../base/clock.js';
import { SYSTEM_CLOCK } from '../../base/clock.js';
import { reasonOf } from '../../base/errors.js';
import type { Logger } from '../../base/logger.js';
import { HUB_HEALTH_TOPIC, encodeControl } from '../../protocol/live-control.js';
import type { HealthCondition } from '../../protocol/live-control.js';
import type { ConfigChannel } from '../mls/config-channel.js';
import type { MediaEvent, MediaStatus } from './pipeline.js';

/** The condition a media event starts, if any (pure). */
export function conditionOf(
  e: MediaEvent,
): { condition: HealthCondition; detail: string } | undefined {
  switch (e.type) {
    case 'camera-unplugged':
      return { condition: 'camera-failed', detail: 'the camera was unplugged' };
    case 'camera-replugged':
      return { condition: 'recovered', detail: 'the camera is back' };
    case 'state':
      if (e.state === 'failed')
        return { condition: 'camera-failed', detail: 'the video pipeline gave up' };
      return undefined;
    case 'encoder-started':
      return e.path === 'software'
        ? { condition: 'encoder-software', detail: 'no hardware H.264 encoder' }
        : undefined;
    case 'clip-started':
    case 'clip-first-chunk':
    case 'clip-closed':
    case 'clip-failed':
    case 'thumbnail':
    case 'encoder-exited':
    case 'motion-start':
    case 'motion-end':
    case 'objects':
    case 'motion-ignored':
    case 'analysis-level': // the load governor sends its own notice (governor.ts)
    case 'warning':
      return undefined;
  }
}

/**
 * The condition the pipeline is in now, if any (pure): what a phone must hear when the
 * notices start after the pipeline did (the encoder's choice and an early camera failure
 * happen during `start()`, before the config channel's services run).
 */
export function conditionNow(
  s: Pick<MediaStatus, 'state' | 'camera' | 'encoder'>,
): { condition: HealthCondition; detail: string } | undefined {
  if (s.state === 'failed')
    return { condition: 'camera-failed', detail: 'the video pipeline gave up' };
  if (s.state === 'camera-missing' || !s.camera.present)
    return { condition: 'camera-failed', detail: 'the camera was unplugged' };
  if (s.encoder.path === 'software')
    return { condition: 'encoder-software', detail: 'no hardware H.264 encoder' };
  return undefined;
}

/**
 * Send the pipeline's present condition, then follow `media` events and send a notice when
 * a condition starts; returns the unsubscribe.
 */
export function sendHealthNotices(o: {
  media: {
    on(listener: (e: MediaEvent) => void): () => void;
    status(): Pick<MediaStatus, 'state' | 'camera' | 'encoder'>;
  };
  channel: Pick<ConfigChannel, 'sendApp'>;
  logger: Logger;
  clock?: Clock;
}): () => void {
  const clock = o.clock ?? SYSTEM_CLOCK;
  const log = o.logger.child('health');
  let current: HealthCondition | undefined;
  const send = (c: { condition: HealthCondition; detail: string }): void => {
    if (c.condition === current) return;
    if (c.condition === 'recovered' && current === undefined) return;
    current = c.condition === 'recovered' ? undefined : c.condition;
    const body = encodeControl(HUB_HEALTH_TOPIC, {
      v: 1,
      at: Math.floor(clock.now()),
      condition: c.condition,
      detail: c.detail,
    });
    o.channel.sendApp(HUB_HEALTH_TOPIC, body).catch((err: unknown) => {
      log.warn('health notice not sent', { condition: c.condition, err: reasonOf(err) });
    });
  };
  const off = o.media.on((e) => {
    const c = conditionOf(e);
    if (c) send(c);
  });
  const now = conditionNow(o.media.status());
  if (now) send(now);
  return off;
}
