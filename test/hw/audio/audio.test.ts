import t from 'tap';
import { ALSA_PCM, SAMPLE_RATES, audioConfigSchema } from '../../../hw/audio/audio.js';

t.test('audio settings: off by default, strict', async (t) => {
  t.same(audioConfigSchema.parse({}), {
    enabled: false,
    sampleRate: 48_000,
    channels: 1,
    bitrateKbps: 64,
  });
  for (const r of SAMPLE_RATES) t.equal(audioConfigSchema.parse({ sampleRate: r }).sampleRate, r);
  t.notOk(audioConfigSchema.safeParse({ sampleRate: 8000 }).success, '8 kHz is not offered');
  t.notOk(audioConfigSchema.safeParse({ channels: 0 }).success);
  t.notOk(audioConfigSchema.safeParse({ bitrateKbps: 512 }).success);
  t.notOk(audioConfigSchema.safeParse({ enable: true }).success, 'a typo is an error');
});

t.test('ALSA PCM names', async (t) => {
  t.ok(ALSA_PCM.test('hw:CARD=Loopback,DEV=1'));
  t.notOk(ALSA_PCM.test('-i'));
  t.notOk(ALSA_PCM.test('hw:1,0\n'));
});
