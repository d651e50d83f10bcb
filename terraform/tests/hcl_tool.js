// Canonical formatting and parsing of HCL files with HashiCorp's own Go libraries, compiled to
// WebAssembly and shipped in npm packages (@cdktf/hcl-tools wraps hclwrite.Format, the formatter
// behind `terraform fmt`; @cdktf/hcl2json wraps the hcl/v2 parser). Used because a terraform
// binary and its provider downloads are not available offline.
//
//   node hcl_tool.js fmt [--write] FILE...   exit 1 if any file is not canonically formatted
//   node hcl_tool.js parse FILE...           exit 1 if any file does not parse
"use strict";

const fs = require("fs");

function firstDifference(actual, expected) {
  const actualLines = actual.split("\n");
  const expectedLines = expected.split("\n");
  for (let index = 0; index < Math.max(actualLines.length, expectedLines.length); index += 1) {
    if (actualLines[index] !== expectedLines[index]) {
      return { line: index + 1, actual: actualLines[index], expected: expectedLines[index] };
    }
  }
  return null;
}

async function checkFormat(files, write) {
  const { format } = require("@cdktf/hcl-tools");
  let failures = 0;
  for (const file of files) {
    const source = fs.readFileSync(file, "utf8");
    let formatted;
    try {
      formatted = await format(source);
    } catch (error) {
      console.log(`FAIL ${file}: formatter error: ${error.message || error}`);
      failures += 1;
      continue;
    }
    if (formatted === source) {
      continue;
    }
    if (write) {
      fs.writeFileSync(file, formatted);
      console.log(`formatted ${file}`);
      continue;
    }
    const difference = firstDifference(source, formatted);
    console.log(`FAIL ${file}: not canonically formatted (first difference at line ${difference.line})`);
    console.log(`  have: ${JSON.stringify(difference.actual)}`);
    console.log(`  want: ${JSON.stringify(difference.expected)}`);
    failures += 1;
  }
  return failures;
}

async function checkParse(files) {
  const { parse } = require("@cdktf/hcl2json");
  let failures = 0;
  for (const file of files) {
    try {
      const parsed = await parse(file, fs.readFileSync(file, "utf8"));
      if (parsed === null || typeof parsed !== "object") {
        throw new Error("parser returned no document");
      }
    } catch (error) {
      console.log(`FAIL ${file}: ${error.message || error}`);
      failures += 1;
    }
  }
  return failures;
}

async function main() {
  const [mode, ...rest] = process.argv.slice(2);
  const write = rest.includes("--write");
  const files = rest.filter((argument) => argument !== "--write");
  if (!["fmt", "parse"].includes(mode) || files.length === 0) {
    console.error("usage: hcl_tool.js fmt [--write] FILE... | parse FILE...");
    process.exit(2);
  }
  const failures = mode === "fmt" ? await checkFormat(files, write) : await checkParse(files);
  console.log(`${mode}: ${files.length - failures} of ${files.length} files ok`);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
