// Writes, for each of OpenAI's encodings gpt2 and cl100k_base, its rank
// file and the ids OpenAI's own tokenizer (the npm package tiktoken: its
// Rust core compiled to WebAssembly) gives each test document, for
// tokenizer.TestTiktokenParity to compare with.
//
// usage: node parity.mjs NODE_MODULES_DIR OUT_DIR DOC...
// A document is read as bytes and decoded as UTF-8 with replacement (what
// a string is in JavaScript); the decoded text's UTF-8 bytes are written
// beside its ids, so both sides encode the same text.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const [modules, out, ...docs] = process.argv.slice(2);
if (!modules || !out || docs.length === 0) {
	console.error("usage: node parity.mjs NODE_MODULES_DIR OUT_DIR DOC...");
	process.exit(2);
}
const require = createRequire(path.join(path.resolve(modules), "index.js"));
const { get_encoding } = require("tiktoken");

fs.mkdirSync(out, { recursive: true });
for (const name of ["gpt2", "cl100k_base"]) {
	// The rank file from the package's own table (js-tiktoken's packed
	// form: each line a literal, a first rank, then base64 tokens).
	const table = require(`tiktoken/encoders/${name}.json`);
	const lines = [];
	for (const line of table.bpe_ranks.split("\n")) {
		if (!line) continue;
		const [, offset, ...tokens] = line.split(" ");
		tokens.forEach((t, i) => lines.push(`${t} ${Number.parseInt(offset, 10) + i}`));
	}
	fs.writeFileSync(path.join(out, `${name}.tiktoken`), lines.join("\n") + "\n");
	const enc = get_encoding(name);
	const dir = path.join(out, name);
	fs.mkdirSync(dir, { recursive: true });
	let bytes = 0;
	const start = process.hrtime.bigint();
	for (const doc of docs) {
		const text = new TextDecoder("utf-8").decode(fs.readFileSync(doc));
		const base = path.basename(doc);
		fs.writeFileSync(path.join(dir, base + ".text"), Buffer.from(text, "utf8"));
		const ids = enc.encode_ordinary(text);
		fs.writeFileSync(path.join(dir, base + ".ids"), Array.from(ids).join(" ") + "\n");
		bytes += Buffer.byteLength(text, "utf8");
	}
	const secs = Number(process.hrtime.bigint() - start) / 1e9;
	console.log(`${name}: ${lines.length} ranks, ${docs.length} documents, ${(bytes / 1e6).toFixed(2)} MB encoded by tiktoken in ${secs.toFixed(2)} s`);
	enc.free();
}
