// JavaScript and TypeScript runner of the sbx code interpreter.
//
// sbx-agent starts one of these per code context as
// `node --expose-internals runner.js javascript|typescript` and speaks the
// protocol described in runner.py over fds 3 (commands) and 4 (events).
//
// Code runs as a script in the main context, so declarations persist from
// one run to the next and the completion value of the last statement is the
// result. Top-level await is rewritten the way the Node.js REPL does it (its
// internal processTopLevelAwait, hence --expose-internals); a result that is
// a promise is awaited. TypeScript is transpiled with the `typescript`
// package's transpileModule (types are erased, not checked).
//
// SIGINT interrupts synchronous code (vm breakOnSigint) and abandons an
// awaited promise; between runs it is ignored. A language is available when
// node is 16 or later and, for TypeScript, require() finds `typescript`.
'use strict';

const fs = require('fs');
const path = require('path');
const util = require('util');
const vm = require('vm');
const { createRequire } = require('module');
const { pathToFileURL } = require('url');

const language = process.argv[2] || 'javascript';
const fence = Buffer.from(process.env.SBX_INTERP_FENCE || '', 'utf8');
delete process.env.SBX_INTERP_FENCE;

// Reopening the channels through /proc gives descriptors that close on
// exec: processes the code starts must not hold them. Without /proc they
// are used as inherited.
function reopen(fd, flags) {
  try {
    const copy = fs.openSync(`/proc/self/fd/${fd}`, flags);
    fs.closeSync(fd);
    return copy;
  } catch {
    return fd;
  }
}
const cmdFd = reopen(3, 'r');
const eventFd = reopen(4, 'w');

function send(msg) {
  let buf = Buffer.from(JSON.stringify(msg) + '\n', 'utf8');
  while (buf.length > 0) {
    try {
      buf = buf.subarray(fs.writeSync(eventFd, buf));
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
    }
  }
}

const MIME_FIELDS = {
  'text/plain': 'text', 'text/html': 'html', 'text/markdown': 'markdown', 'text/latex': 'latex',
  'image/svg+xml': 'svg', 'image/png': 'png', 'image/jpeg': 'jpeg', 'application/json': 'json',
  'application/javascript': 'javascript',
};
// Methods a value may define to offer representations, named as in IPython.
const REPR_METHODS = {
  _repr_html_: 'html', _repr_markdown_: 'markdown', _repr_latex_: 'latex', _repr_svg_: 'svg',
  _repr_png_: 'png', _repr_jpeg_: 'jpeg', _repr_json_: 'json', _repr_javascript_: 'javascript',
};

let runId = 0;

function emit(stream, text) {
  if (text) send({ type: stream, id: runId, text });
}

// console.* and process.stdout.write travel as events in order with the
// results; output of child processes goes to the real fds 1 and 2.
for (const [stream, name] of [[process.stdout, 'stdout'], [process.stderr, 'stderr']]) {
  stream.write = function write(chunk, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    const text = typeof chunk === 'string'
      ? (encoding && encoding !== 'utf8' && encoding !== 'utf-8' ? Buffer.from(chunk, encoding).toString('utf8') : chunk)
      : Buffer.from(chunk).toString('utf8');
    emit(name, text);
    if (cb) process.nextTick(cb);
    return true;
  };
}

function imageField(v) {
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  return String(v).replace(/\s+/g, '');
}

function jsonable(v) {
  try {
    return JSON.stringify(v) !== undefined;
  } catch {
    return false;
  }
}

function fromBundle(bundle, r) {
  for (const [mime, v] of Object.entries(bundle || {})) {
    const field = MIME_FIELDS[mime];
    if (!field || v === undefined || v === null) continue;
    if (field === 'png' || field === 'jpeg') r[field] = imageField(v);
    else if (field === 'json') {
      if (jsonable(v)) r.json = v;
    } else r[field] = typeof v === 'string' ? v : String(v);
  }
  return r;
}

// toResult returns every representation of v as an api.CodeResult.
function toResult(v, main) {
  const r = {};
  if (v !== null && (typeof v === 'object' || typeof v === 'function')) {
    if (typeof v._repr_mimebundle_ === 'function') fromBundle(v._repr_mimebundle_(), r);
    for (const [method, field] of Object.entries(REPR_METHODS)) {
      if (typeof v[method] !== 'function' || r[field] !== undefined) continue;
      const out = v[method]();
      if (out === undefined || out === null) continue;
      if (field === 'png' || field === 'jpeg') r[field] = imageField(out);
      else if (field === 'json') {
        if (jsonable(out)) r.json = out;
      } else r[field] = String(out);
    }
    const proto = Object.getPrototypeOf(v);
    if (r.json === undefined && (Array.isArray(v) || proto === Object.prototype || proto === null) && jsonable(v)) {
      r.json = v;
    }
  }
  if (r.text === undefined) r.text = util.inspect(v, { depth: 4, maxArrayLength: 200, breakLength: 100 });
  if (main) r.isMainResult = true;
  return r;
}

function publish(result) {
  send({ type: 'result', id: runId, result });
}

// display(value) shows a value as a result; display(bundle, {raw: true})
// shows a MIME bundle ({'text/html': '<b>hi</b>'}); display.html(s) and
// friends show one representation.
function display(value, opts) {
  publish(opts && opts.raw ? fromBundle(value, {}) : toResult(value, false));
}
for (const [mime, field] of Object.entries(MIME_FIELDS)) {
  if (field === 'text') continue;
  display[field] = (v) => display({ [mime]: v, 'text/plain': `<${mime}>` }, { raw: true });
}

function errorOf(e) {
  if (e instanceof Error || (e && typeof e === 'object' && typeof e.stack === 'string')) {
    const lines = String(e.stack).split('\n');
    // Frames below the code are the runner's own.
    const cut = lines.findIndex((l) => l.includes(__filename) || l.includes('node:internal/vm') || l.includes('at Script.runInThisContext'));
    return { name: String(e.name || 'Error'), message: String(e.message ?? ''), traceback: cut > 0 ? lines.slice(0, cut) : lines };
  }
  const text = util.inspect(e);
  return { name: 'Error', message: `Uncaught ${text}`, traceback: [`Uncaught ${text}`] };
}

let processTopLevelAwait = null;
try {
  ({ processTopLevelAwait } = require('internal/repl/await'));
} catch {
  // Without it, code with top-level await runs inside an async function:
  // its declarations stay local to the run.
}

let ts = null;

function loadTypeScript() {
  const candidates = ['typescript'];
  for (const dir of ['/usr/share/nodejs', '/usr/lib/nodejs', '/usr/local/lib/node_modules', '/usr/lib/node_modules']) {
    candidates.push(path.join(dir, 'typescript'));
  }
  for (const c of candidates) {
    try {
      return require(c);
    } catch {
      // next
    }
  }
  return null;
}

// Diagnostics transpileModule raises for top-level await in a script; the
// await is handled when the output runs.
const TS_IGNORED = new Set([1375, 1378, 1431, 1432]);

function transpile(code, filename) {
  const out = ts.transpileModule(code, {
    fileName: filename + '.ts',
    reportDiagnostics: true,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022 ?? ts.ScriptTarget.ES2020,
      module: ts.ModuleKind.CommonJS,
      esModuleInterop: true,
      experimentalDecorators: true,
    },
  });
  const errors = (out.diagnostics || []).filter((d) => d.category === ts.DiagnosticCategory.Error && !TS_IGNORED.has(d.code));
  if (errors.length > 0) {
    const lines = errors.map((d) => {
      const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n');
      if (d.file && d.start !== undefined) {
        const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
        return `${filename}.ts(${line + 1},${character + 1}): error TS${d.code}: ${msg}`;
      }
      return `error TS${d.code}: ${msg}`;
    });
    const err = new SyntaxError(lines[0].replace(/^.*?error /, ''));
    err.stack = lines.join('\n');
    throw err;
  }
  return out.outputText;
}

function importDynamically(specifier) {
  if (specifier.startsWith('./') || specifier.startsWith('../') || specifier.startsWith('/')) {
    return import(pathToFileURL(path.resolve(process.cwd(), specifier)).href);
  }
  try {
    const resolved = createRequire(path.join(process.cwd(), '<sbx>')).resolve(specifier);
    if (path.isAbsolute(resolved)) return import(pathToFileURL(resolved).href);
  } catch {
    // builtins and packages require() cannot resolve
  }
  return import(specifier);
}

function compile(code, filename) {
  const opts = { filename, importModuleDynamically: importDynamically };
  if (processTopLevelAwait && code.includes('await')) {
    let wrapped = null;
    try {
      wrapped = processTopLevelAwait(code);
    } catch {
      // a syntax error: compiling the code as is reports it
    }
    if (wrapped !== null) {
      try {
        return { script: new vm.Script(wrapped, opts), wrapped: true };
      } catch {
        // fall through to the unwrapped code, whose error says more
      }
    }
  }
  return { script: new vm.Script(code, opts), wrapped: false };
}

let interrupt = null; // rejects the awaited value of the current run

process.on('SIGINT', () => {
  if (interrupt) interrupt();
});
process.on('uncaughtException', (e) => {
  emit('stderr', `Uncaught ${e && e.stack ? e.stack : util.inspect(e)}\n`);
});
process.on('unhandledRejection', (e) => {
  emit('stderr', `Uncaught (in promise) ${e && e.stack ? e.stack : util.inspect(e)}\n`);
});

let count = 0;

async function run(msg) {
  runId = msg.id;
  send({ type: 'started', id: runId });
  count++;
  const filename = `cell-${count}`;
  try {
    const code = ts ? transpile(msg.code, filename) : msg.code;
    const { script, wrapped } = compile(code, filename);
    let value = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
    if (wrapped || util.types.isPromise(value)) {
      const interrupted = new Promise((_, reject) => {
        interrupt = () => reject(Object.assign(new Error('Script execution was interrupted by `SIGINT`'), { code: 'ERR_SCRIPT_EXECUTION_INTERRUPTED' }));
      });
      try {
        value = await Promise.race([value, interrupted]);
      } finally {
        interrupt = null;
      }
      if (wrapped) value = value === undefined ? undefined : value.value;
    }
    if (value !== undefined) publish(toResult(value, true));
  } catch (e) {
    send({ type: 'error', id: runId, error: errorOf(e) });
  }
  let fences = 0;
  for (const fd of [1, 2]) {
    try {
      fs.writeSync(fd, fence);
      fences |= fd;
    } catch {
      // closed by the code
    }
  }
  send({ type: 'done', id: runId, count, fences });
}

function init(msg) {
  // The context's whole environment, not additions.
  const env = msg.env || {};
  for (const k of Object.keys(process.env)) {
    if (!(k in env)) delete process.env[k];
  }
  Object.assign(process.env, env);
  if (msg.cwd) process.chdir(msg.cwd);
  // CommonJS as in a module at the working directory.
  const mod = { exports: {} };
  globalThis.module = mod;
  globalThis.exports = mod.exports;
  globalThis.require = createRequire(path.join(process.cwd(), '<sbx>'));
  globalThis.__filename = path.join(process.cwd(), '<sbx>');
  globalThis.__dirname = process.cwd();
  globalThis.display = display;
  send({ type: 'inited' });
}

function main() {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 16) {
    send({ type: 'unavailable', message: `node ${process.versions.node} is too old; code contexts need node 16 or later` });
    process.exit(3);
  }
  if (language === 'typescript') {
    ts = loadTypeScript();
    if (!ts) {
      send({ type: 'unavailable', message: "the typescript package cannot be found by node's require() (install node-typescript or `npm install -g typescript`)" });
      process.exit(3);
    }
  }
  send({ type: 'ready' });

  // Commands are read one line at a time; a run finishes before the next
  // line is looked at.
  const queue = [];
  let busy = false;
  let pending = '';
  const next = async () => {
    if (busy) return;
    busy = true;
    while (queue.length > 0) {
      const msg = JSON.parse(queue.shift());
      if (msg.type === 'init') init(msg);
      else if (msg.type === 'run') await run(msg);
    }
    busy = false;
  };
  const input = fs.createReadStream(null, { fd: cmdFd, encoding: 'utf8', highWaterMark: 1 << 16 });
  input.on('data', (chunk) => {
    pending += chunk;
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      queue.push(pending.slice(0, i));
      pending = pending.slice(i + 1);
    }
    next();
  });
  // The agent closed the channel: the context is gone.
  input.on('end', () => process.exit(0));
  input.on('error', () => process.exit(0));
}

main();
