import t from 'tap';
import { AlsaAudioSource } from '../../../hw/audio/alsa-audio.js';

t.test('ffmpeg reads the PCM itself, at the configured rate and channels', async (t) => {
  const a = new AlsaAudioSource({ device: 'hw:Loopback,1,0' });
  t.equal(a.id, 'alsa:hw:Loopback,1,0');
  t.equal(a.kind, 'alsa');
  t.same(a.ffmpegInput({ sampleRate: 16_000, channels: 2 }), [
    '-thread_queue_size',
    '1024',
    '-f',
    'alsa',
    '-sample_rate',
    '16000',
    '-channels',
    '2',
    '-i',
    'hw:Loopback,1,0',
  ]);
  for (const device of ['default', 'hw:1,0', 'plughw:CARD=Device,DEV=0', 'dsnoop:1'])
    t.doesNotThrow(() => new AlsaAudioSource({ device }), device);
});

t.test('names that could smuggle options or paths into argv are refused', async (t) => {
  for (const device of ['', '-f', '--help', 'hw:1,0 -y', '../../etc/passwd', 'a'.repeat(65)])
    t.throws(() => new AlsaAudioSource({ device }), /not an ALSA PCM name/, JSON.stringify(device));
});
