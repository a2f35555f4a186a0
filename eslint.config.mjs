// ESLint flat config for the front end (js/), its unit tests and the build script.
// Formatting is prettier's job (.prettierrc.json); max-len catches what prettier cannot wrap
// (long strings, comments).
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["node_modules/", "resid_widgets/static/", "dist/", "build/", ".venv/"] },
  js.configs.recommended,
  {
    files: ["js/**/*.js"],
    languageOptions: { ecmaVersion: 2020, sourceType: "module", globals: { ...globals.browser } },
  },
  {
    files: ["tests/js/**/*.mjs", "build.mjs", "eslint.config.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.node } },
  },
  {
    rules: {
      "max-len": ["error", { code: 120, ignoreUrls: true }],
      "no-unused-vars": ["error", { args: "after-used", argsIgnorePattern: "^_", caughtErrors: "none" }],
      eqeqeq: ["error", "always", { null: "ignore" }],
      "prefer-const": "error",
      "no-var": "error",
    },
  },
];
