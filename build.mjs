// Bundle js/widget.js into resid_widgets/static/widget.js (one ESM file for every view).
import * as esbuild from "esbuild";

const watch = process.argv.includes("--watch");
const options = {
  entryPoints: ["js/widget.js"],
  outfile: "resid_widgets/static/widget.js",
  bundle: true,
  format: "esm",
  minify: !watch,
  sourcemap: watch ? "inline" : false,
  target: ["es2020"],
  // bundled UMD code must not grab RequireJS in the classic notebook (anywidget issue 369)
  define: { "define.amd": "false" },
  logLevel: "info",
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
