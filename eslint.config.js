// Lint is part of `npm test`: type-aware rules catch floating promises and
// unchecked `any`, the two bug classes that bite an event-driven controller.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  // The dashboard's browser script is served as is (no build step), outside the TypeScript project.
  { ignores: ['dist/**', 'node_modules/**', 'eslint.config.js', 'scripts/**', 'src/monitor/static/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's test()/describe() return promises the runner itself awaits.
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }] },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
      eqeqeq: ['error', 'always'],
    },
  },
);
