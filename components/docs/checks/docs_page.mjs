// Checks /docs as a browser and an HTTP client see it.
//
// Usage: node docs_page.mjs BASE_URL EXPECTED_OPERATIONS_JSON SCREENSHOT_PNG
// Environment: NODE_MODULES (where playwright-core is installed), CHROMIUM
// (the browser binary), LIVE_API=1 to also call the API through "Try it out"
// and "Authorize" (needs the real API; skipped against a static document).
//
// Prints one line per check, `ok - ...` or `not ok - ...`; exits 1 if any failed.

import { createRequire } from "node:module";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [baseUrl, expectedFile, screenshotFile] = process.argv.slice(2);
const require = createRequire(join(process.env.NODE_MODULES, "noop.js"));
const { chromium } = require("playwright-core");

const expected = JSON.parse(readFileSync(expectedFile, "utf8"));
const live = process.env.LIVE_API === "1";
let failures = 0;

async function check(name, body) {
  try {
    const detail = await body();
    console.log(`ok - ${name}${detail ? ` (${detail})` : ""}`);
  } catch (error) {
    failures += 1;
    console.log(`not ok - ${name}: ${error.message.split("\n").slice(0, 6).join("\n    ")}`);
  }
}

function assert(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

// --- HTTP: what the component promises about URLs, types and caching. ---

async function head(path, headers = {}) {
  const response = await fetch(baseUrl + path, { redirect: "manual", headers });
  await response.arrayBuffer();
  return response;
}

let assetFolder = null;

await check("GET /docs redirects to /docs/", async () => {
  const response = await head("/docs");
  assert([301, 302, 307, 308].includes(response.status), `status ${response.status}`);
  const location = new URL(response.headers.get("location"), baseUrl + "/docs");
  assert(location.pathname === "/docs/", `location ${response.headers.get("location")}`);
  return `${response.status} to ${location.pathname}`;
});

await check("GET /docs/ is an uncached HTML page loading versioned assets", async () => {
  const response = await fetch(`${baseUrl}/docs/`);
  const html = await response.text();
  assert(response.status === 200, `status ${response.status}`);
  assert(response.headers.get("content-type")?.startsWith("text/html"), `content-type ${response.headers.get("content-type")}`);
  assert(response.headers.get("cache-control") === "no-cache", `cache-control ${response.headers.get("cache-control")}`);
  const match = html.match(/src="(assets\/[^"/]+)\/swagger-ui-bundle\.js"/);
  assert(match, "the page does not load assets/<version>/swagger-ui-bundle.js");
  assetFolder = match[1];
  return assetFolder;
});

await check("versioned assets have their types and a long immutable cache", async () => {
  assert(assetFolder, "no asset folder found in the page");
  const types = { "swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png" };
  for (const [file, type] of Object.entries(types)) {
    const response = await head(`/docs/${assetFolder}/${file}`, { "accept-encoding": "gzip" });
    assert(response.status === 200, `${file}: status ${response.status}`);
    assert(response.headers.get("content-type")?.startsWith(type), `${file}: content-type ${response.headers.get("content-type")}`);
    const cache = response.headers.get("cache-control") ?? "";
    assert(cache.includes("immutable") && /max-age=\d{7,}/.test(cache), `${file}: cache-control ${cache}`);
  }
  return Object.keys(types).join(", ");
});

await check("unknown paths under /docs/ are 404", async () => {
  for (const path of [`/docs/${assetFolder}/no-such-file.js`, "/docs/assets/0.0.0/swagger-ui-bundle.js", "/docs/no-such-page"]) {
    const response = await head(path);
    assert(response.status === 404, `${path}: status ${response.status}`);
  }
});

// --- The browser: the page renders the operations, and can call the API. ---

const profile = mkdtempSync(join(tmpdir(), "check-docs-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1280, height: 900 },
});

try {
  const page = context.pages()[0] ?? (await context.newPage());
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") {
      pageErrors.push(message.text());
    }
  });

  await check("Swagger UI renders every RealWorld operation", async () => {
    await page.goto(`${baseUrl}/docs`, { waitUntil: "load" });
    assert(new URL(page.url()).pathname === "/docs/", `ended on ${page.url()}`);
    await page.locator(".opblock").first().waitFor({ timeout: 30000 });
    const shown = await page.$$eval(".opblock", (blocks) => blocks.map((block) => ({
      method: block.querySelector(".opblock-summary-method")?.textContent.trim().toUpperCase(),
      path: block.querySelector(".opblock-summary-path")?.getAttribute("data-path"),
    })));
    const key = (operation) => `${operation.method} ${operation.path}`;
    const shownKeys = new Set(shown.map(key));
    const missing = expected.filter((operation) => !shownKeys.has(key(operation))).map(key);
    assert(expected.length > 0, "no expected operations (the document check found none)");
    assert(missing.length === 0, `not shown: ${missing.join(", ")}`);
    for (const path of ["/users/login", "/articles"]) {
      assert(shown.some((operation) => operation.path.endsWith(path)), `no operation block for ${path}`);
    }
    const title = await page.locator(".info .title").first().textContent();
    assert(pageErrors.length === 0, `page errors: ${pageErrors.join("; ")}`);
    return `${shown.length} operations shown, title "${title.trim()}"`;
  });

  await check("screenshot saved", async () => {
    // Every operation, without the long schema list below them.
    const models = await page.locator("section.models").first().boundingBox();
    const height = models ? Math.ceil(models.y) : (await page.evaluate(() => document.body.scrollHeight));
    await page.screenshot({ path: screenshotFile, fullPage: true, clip: { x: 0, y: 0, width: 1280, height } });
    return `${screenshotFile}, 1280x${height}`;
  });

  if (live) {
    const operation = (method, pathSuffix) => page.locator(`.opblock-${method}`).filter({
      has: page.locator(`.opblock-summary-path[data-path$="${pathSuffix}"]`),
    }).first();

    // Opens an operation, presses "Try it out" and "Execute", and returns the
    // status and body Swagger UI shows for the live response.
    async function tryItOut(method, pathSuffix) {
      const block = operation(method, pathSuffix);
      if (!(await block.locator(".try-out").isVisible())) {
        await block.locator(".opblock-summary").first().click();
      }
      const tryOut = block.locator("button.try-out__btn");
      if ((await tryOut.textContent()).trim() === "Try it out") {
        await tryOut.click();
      }
      await block.locator("button.execute").click();
      const status = block.locator(".live-responses-table tbody .response-col_status").first();
      await status.waitFor({ timeout: 15000 });
      const body = await block.locator(".live-responses-table tbody .response-col_description pre").first().textContent();
      const curl = await block.locator(".curl-command").first().textContent().catch(() => "");
      return { status: (await status.textContent()).trim(), body, curl };
    }

    await check("Try it out calls the API on the same origin (GET /tags)", async () => {
      const result = await tryItOut("get", "/tags");
      assert(result.status.startsWith("200"), `status ${result.status}: ${result.body}`);
      assert(JSON.parse(result.body).tags !== undefined, `body ${result.body}`);
      return `status ${result.status}`;
    });

    await check("Authorize with a Token makes authenticated calls work (GET /user)", async () => {
      const username = `docs${Date.now()}${Math.floor(Math.random() * 1e6)}`;
      const registered = await fetch(`${baseUrl}/api/users`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user: { username, email: `${username}@example.com`, password: `pw-${username}` } }),
      });
      const token = (await registered.json())?.user?.token;
      assert(token, `registration failed: ${registered.status}`);

      await page.locator(".auth-wrapper .authorize").first().click();
      const dialog = page.locator(".dialog-ux .modal-ux");
      await dialog.waitFor();
      // The bare token: the page adds the `Token ` prefix the API expects.
      await dialog.locator("input[type=text], input[type=password]").first().fill(token);
      await dialog.locator("button.authorize").first().click();
      await dialog.locator("button.btn-done, button.close-modal").first().click();

      const result = await tryItOut("get", "/user");
      assert(result.status.startsWith("200"), `status ${result.status}: ${result.body}`);
      assert(JSON.parse(result.body).user?.username === username, `body ${result.body}`);
      assert(/Authorization: Token /i.test(result.curl), `curl shows no Token header: ${result.curl}`);
      return `status ${result.status} as ${username}`;
    });
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

process.exit(failures === 0 ? 0 : 1);
