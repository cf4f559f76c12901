/**
 * ts-mls module by module (issue #19, memory): the MLS profile loads only the files of the
 * package it uses, never its index (which loads every module, and @hpke/core's HPKE, KEMs and
 * AEADs the native provider never calls).
 *
 * Here each file is imported by URL beside the package's entry point: the package exports
 * them ("./*.js"), but tap's TypeScript loader does not resolve subpath patterns. The shipped
 * bundle (image/app-bundle.ts) replaces this module with one that imports the same files by
 * literal specifiers (`ts-mls/<file>`), so esbuild bundles them with their dependencies
 * instead of leaving ~90 files to load from node_modules.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

/** Every ts-mls file the profile may load (the bundle carries exactly these). */
export const TS_MLS_FILES = [
  'createCommit.js',
  'createMessage.js',
  'clientState.js',
  'message.js',
  'defaultCapabilities.js',
  'keyPackageEqualityConfig.js',
  'lifetime.js',
  'paddingConfig.js',
  'pskIndex.js',
  'keyPackage.js',
  'crypto/ciphersuite.js',
  'keySchedule.js',
  'processMessages.js',
  'util/byteArray.js',
  'crypto/implementation/default/provider.js',
] as const;
export type TsMlsFile = (typeof TS_MLS_FILES)[number];

/** The module `file` of the installed ts-mls. */
export async function importMlsFile(file: TsMlsFile): Promise<Record<string, unknown>> {
  const entry = pathToFileURL(createRequire(import.meta.url).resolve('ts-mls'));
  return (await import(new URL(`./${file}`, entry).href)) as Record<string, unknown>;
}
