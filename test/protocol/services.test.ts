import t from 'tap';
import {
  OtaServiceSchema,
  RelayServiceSchema,
  SERVICE_URL_MAX,
  otaRootProblem,
  serviceUrlProblem,
} from '../../protocol/services.js';

void t.test('service URLs: https anywhere, http only to loopback or link-local', async (t) => {
  for (const ok of [
    'https://relay.example.net',
    'https://relay.example.net:8443/vigil/',
    'http://127.0.0.1:8080',
    'http://127.8.9.10',
    'http://localhost:3000',
    'http://[::1]:8080',
    'http://169.254.10.1:8080',
    'http://[fe80::1]:8080',
  ])
    t.equal(serviceUrlProblem(ok), undefined, ok);
  const refused: [string, RegExp][] = [
    ['http://relay.example.net', /must be https \(http only to a loopback or link-local/],
    ['http://10.0.0.1:8080', /must be https/],
    ['http://169.255.0.1', /must be https/],
    ['http://[fe00::1]', /must be https/],
    ['http://127.0.0.1.example.net', /must be https/],
    ['ftp://relay.example.net', /must be https, not ftp/],
    ['ws://127.0.0.1', /must be https, not ws/],
    ['javascript:alert(1)', /must be https, not javascript/],
    ['relay.example.net', /is not a URL/],
    ['https://user:pw@relay.example.net', /user name or password/],
    ['https://relay.example.net/#x', /fragment/],
    [`https://relay.example.net/${'a'.repeat(SERVICE_URL_MAX)}`, /at most 512/],
  ];
  for (const [url, why] of refused) t.match(serviceUrlProblem(url), why, url);
});

void t.test('relay and OTA service schemas', async (t) => {
  t.same(RelayServiceSchema.parse({ url: 'https://r.example/' }), { url: 'https://r.example' });
  t.match(RelayServiceSchema.safeParse({ url: 'https://r.example', enrollToken: 'a b' }), {
    success: false,
    error: { issues: [{ path: ['enrollToken'], message: /printable ASCII without spaces/ }] },
  });
  t.match(RelayServiceSchema.safeParse({ url: 'https://r.example', extra: 1 }), {
    success: false,
  });
  t.same(OtaServiceSchema.parse({ repositoryUrl: 'https://u.example/repo', channel: 'beta' }), {
    repositoryUrl: 'https://u.example/repo',
    channel: 'beta',
  });
  t.match(OtaServiceSchema.safeParse({ repositoryUrl: 'https://u.example', channel: 'Beta!' }), {
    success: false,
    error: { issues: [{ path: ['channel'], message: /a-z 0-9/ }] },
  });
});

void t.test('OTA trust root: a first look at the format', async (t) => {
  t.equal(otaRootProblem(Buffer.from('{"signed":{"_type":"root"},"signatures":[]}')), undefined);
  t.equal(otaRootProblem(Buffer.from('{')), 'is not JSON');
  t.match(otaRootProblem(Buffer.from('{"signed":{"_type":"targets"}}')), /not TUF root/);
  t.match(otaRootProblem(Buffer.from('null')), /not TUF root/);
  t.match(otaRootProblem(Buffer.from('{"signed":null}')), /not TUF root/);
});
