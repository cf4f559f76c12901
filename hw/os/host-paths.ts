/**
 * Every host path Vigil touches goes through one root prefix, so a test can
 * point the whole program at a temp dir (`VIGIL_ROOT=/tmp/x`) and nothing
 * escapes it. Production uses root "/".
 */
import { isAbsolute, join, resolve } from 'node:path';
import { VigilError } from '../../base/errors.js';

export class HostPaths {
  readonly root: string;

  constructor(root = '/') {
    this.root = resolve(root);
  }

  /** Map an absolute host path ("/etc/vigil/config.json") under the root. */
  host(absPath: string): string {
    if (!isAbsolute(absPath)) {
      throw new VigilError('EPATH', `host path must be absolute: ${absPath}`);
    }
    const mapped = this.root === '/' ? resolve(absPath) : join(this.root, resolve(absPath));
    if (this.root !== '/' && mapped !== this.root && !mapped.startsWith(this.root + '/')) {
      throw new VigilError('EPATH', `host path escapes the root: ${absPath}`);
    }
    return mapped;
  }

  /** Well-known locations, all under the root. */
  get configFile(): string {
    return this.host('/etc/vigil/config.json');
  }
  get stateDir(): string {
    return this.host('/var/lib/vigil');
  }
  get runDir(): string {
    return this.host('/run/vigil');
  }
  get provisioningDir(): string {
    return this.host('/boot/vigil-provisioning');
  }
  get dataMount(): string {
    return this.host('/var/lib/vigil/data');
  }

  static fromEnv(env: NodeJS.ProcessEnv = process.env): HostPaths {
    return new HostPaths(env.VIGIL_ROOT ?? '/');
  }
}
