// Builds the browser example into dist/, the only directory chinwag serves:
// the page, its script and style, and xmpp.js's prebuilt browser bundle
// (@xmpp/client ships dist/xmpp.min.js, which defines the global XMPP).
//
//   npm ci && npm run build

import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const library = join(here, "node_modules", "@xmpp", "client");

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
for (const name of ["index.html", "app.js", "style.css"]) {
  copyFileSync(join(here, name), join(dist, name));
}
copyFileSync(join(library, "dist", "xmpp.min.js"), join(dist, "xmpp.min.js"));
copyFileSync(join(library, "LICENSE"), join(dist, "xmpp.LICENSE.txt"));
console.log(`built ${dist}`);
