/**
 * What the local run's viewer shows of its hub in the status strip: the
 * supervisor state, the camera and its negotiated format, the encoder path and
 * why, and the data directory's free space. The local run has the hub in
 * process; a companion elsewhere learns only what the hub's sealed messages say.
 */
import { statfs } from 'node:fs/promises';
import type { DeviceReport } from '../app/viewer/review-api.js';
import { describeFormat } from '../hw/camera/camera.js';
import type { MediaStatus } from '../firmware/media/pipeline.js';

export async function localHubReport(
  hub: { status(): { state: string; summary: string } },
  media: { status(): MediaStatus } | undefined,
  dataDir: string,
): Promise<DeviceReport> {
  const h = hub.status();
  const m = media?.status();
  const st = await statfs(dataDir);
  const camera = m
    ? `${m.camera.id} (${m.camera.kind}${m.camera.present ? '' : ', absent'})${m.camera.format ? ` ${describeFormat(m.camera.format)}` : ''}`
    : null;
  const encoder =
    m?.encoder.path !== undefined
      ? `${m.encoder.path}${m.encoder.device !== undefined ? ` ${m.encoder.device}` : ''}${m.encoder.reason !== undefined ? ` (${m.encoder.reason})` : ''}`
      : null;
  return {
    state: h.state,
    summary: h.summary,
    camera,
    encoder,
    storage: {
      path: dataDir,
      freeBytes: st.bavail * st.bsize,
      totalBytes: st.blocks * st.bsize,
      kind: 'plain directory (development)',
    },
  };
}
