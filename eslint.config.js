// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      'dist/**',
      '.tap/**',
      'coverage/**',
      'test/system/.cache/**',
      'image/.cache/**',
      'image/out/**',
      'bench/out/**',
      '.ci/out/**',
      '.vigil-dev/**',
      '**/*.js',
      '**/*.mjs',
      '**/*.cjs',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true },
      ],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: 'node:child_process',
              message: 'Use hw/os/run.ts (argv arrays, timeouts, typed errors).',
            },
            {
              name: 'child_process',
              message: 'Use hw/os/run.ts (argv arrays, timeouts, typed errors).',
            },
          ],
        },
      ],
    },
  },
  {
    // The hub's code path speaks HTTP through base/http.ts (node:http): the platform fetch
    // loads undici, 3-4 MiB of the hub's resident memory (issue #19; test/base/no-undici.test.ts).
    files: [
      'base/**/*.ts',
      'hw/**/*.ts',
      'protocol/**/*.ts',
      'firmware/**/*.ts',
      'ota/**/*.ts',
      'bin/**/*.ts',
    ],
    rules: {
      'no-restricted-globals': [
        'error',
        ...['fetch', 'Response', 'Request', 'Headers', 'FormData', 'WebSocket', 'EventSource'].map(
          (name) => ({
            name,
            message: 'The hub does not load undici: use base/http.ts (httpRequest).',
          }),
        ),
      ],
    },
  },
  {
    // The one process runner is the only module allowed to spawn processes.
    files: ['hw/os/run.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/require-await': 'off',
      // tap's t.test()/t.rejects() return promises that tap itself awaits
      '@typescript-eslint/no-floating-promises': 'off',
    },
  },
);
