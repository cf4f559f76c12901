import t from 'tap';
import { SimulatedTone } from '../../../hw/audio/simulated-tone.js';
import { run } from '../../../hw/os/run.js';

t.test('a lavfi sine at the capture rate, at real time', async (t) => {
  const tone = new SimulatedTone({ frequencyHz: 1000 });
  t.equal(tone.id, 'simulated:tone');
  t.equal(tone.kind, 'simulated');
  const args = tone.ffmpegInput({ sampleRate: 16_000, channels: 1 });
  t.same(args, ['-re', '-f', 'lavfi', '-i', 'sine=frequency=1000:sample_rate=16000']);
  // ffmpeg takes it: 0.2 s of it decodes to 16 kHz samples
  const r = await run(
    'ffmpeg',
    ['-hide_banner', '-loglevel', 'error', '-t', '0.2', ...args.slice(1), '-f', 's16le', 'pipe:1'],
    { timeoutMs: 30_000 },
  );
  t.equal(r.stdout.length, 0.2 * 16_000 * 2, '3200 samples of 16 bits');
});

t.test('frequencies outside hearing are refused', async (t) => {
  t.equal(new SimulatedTone().frequencyHz, 440, 'default 440 Hz');
  t.equal(new SimulatedTone({ name: 'mic' }).id, 'simulated:mic');
  for (const hz of [0, 19, 20_001, Number.NaN])
    t.throws(() => new SimulatedTone({ frequencyHz: hz }), /outside 20-20000/, String(hz));
});
