// Loads an XForm in ODK's own form engine (@getodk/xforms-engine) under jsdom, fills it, and prints the
// submission the engine serialises. Test-only: tests/odk/engine.py drives it with one JSON job on stdin.
//
// The engine's XPath parser is tree-sitter compiled to WASM, whose loader expects CommonJS globals
// (__dirname, __filename, require); as an ES module they are missing, so they are defined before the
// engine is imported. The engine also expects the browser's DOM classes as globals: jsdom gives them.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { JSDOM } from 'jsdom';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const engineDist = path.dirname(require.resolve('@getodk/xforms-engine'));
globalThis.__dirname = engineDist;
globalThis.__filename = path.join(engineDist, 'index.js');
globalThis.require = require;
const { window } = new JSDOM('<!doctype html><html><body></body></html>');
for (const name of ['DOMParser', 'XMLSerializer', 'Node', 'Element', 'Document', 'XPathResult', 'NodeFilter',
                    'File', 'Blob']) {
  if (!(name in globalThis) || name === 'DOMParser' || name === 'XMLSerializer') globalThis[name] = window[name];
}
globalThis.document = window.document;
const { createInstance } = await import('@getodk/xforms-engine');

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const job = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const attachments = job.attachments || {};

const fetchFormAttachment = async (url) => {
  const name = String(url).split('/').pop();
  if (!(name in attachments)) return new Response('', { status: 404 });
  const type = name.endsWith('.csv') ? 'text/csv' : 'application/xml';
  return new Response(attachments[name], { status: 200, headers: { 'Content-Type': type } });
};

function walk(node, visit) {
  visit(node);
  for (const child of node.currentState.children ?? []) walk(child, visit);
}

function byReference(root) {
  const nodes = new Map();
  walk(root, (node) => nodes.set(node.currentState.reference, node));
  return nodes;
}

const created = await createInstance(job.xform, {
  form: { fetchFormAttachment, missingResourceBehavior: 'BLANK' },
});
const root = created.root ?? created.instance?.root ?? created;
if (job.language) {
  const lang = root.languages.find((l) => l.language === job.language);
  if (lang) root.setLanguage(lang);
}
// Repeats first: rows are added before their answers are set.
for (const [ref, count] of Object.entries(job.repeats || {})) {
  const range = byReference(root).get(ref);
  if (!range) throw new Error(`no repeat ${ref}`);
  const have = range.currentState.children.length;
  if (count > have) range.addInstances(have - 1, count - have);
}
const problems = [];
for (const [ref, value] of Object.entries(job.answers || {})) {
  const node = byReference(root).get(ref);
  if (!node) { problems.push(`no node ${ref}`); continue; }
  if (node.nodeType === 'select') {
    if (Array.isArray(value)) node.selectValues(value); else node.selectValue(value);
  } else if (node.nodeType === 'upload') {
    node.setValue(new globalThis.File([Buffer.from(value.base64, "base64")], value.name, { type: value.type }));
  } else if (node.nodeType === 'input') {
    node.setValue(value);
  } else {
    problems.push(`${ref} is a ${node.nodeType}, not answerable`);
  }
}
const tree = [];
walk(root, (node) => {
  const state = node.currentState;
  tree.push({
    ref: state.reference, type: node.nodeType, relevant: state.relevant, required: state.required,
    value: typeof state.value === 'object' && state.value !== null && !Array.isArray(state.value)
      ? (state.value.name ?? JSON.stringify(state.value)) : state.value,
    label: state.label ? state.label.asString : null,
    options: node.nodeType === 'select' ? state.valueOptions.map((o) => o.value) : undefined,
    violation: node.validationState?.violation?.message?.asString ?? null,
  });
});
const payload = await root.prepareInstancePayload();
const files = {};
let xml = null;
for (const data of payload.data) {
  for (const [key, entry] of data.entries()) {
    const text = typeof entry === 'string' ? entry : Buffer.from(await entry.arrayBuffer());
    if (key === 'xml_submission_file') xml = text.toString('utf8');
    else files[key] = { name: entry.name, base64: text.toString('base64') };
  }
}
process.stdout.write(JSON.stringify({
  status: payload.status, xml, files, problems, tree,
  violations: (payload.violations ?? []).map((v) => v.reference ?? String(v)),
}, (key, value) => (typeof value === "bigint" ? Number(value) : value)));
