// The official OpenAI client library against `cairn serve`: it lists the
// models, completes, streams, and is refused without a valid key.
// Usage: CAIRN_URL=http://127.0.0.1:PORT/v1 CAIRN_KEY=KEY node test.mjs
import OpenAI from "openai";
import assert from "node:assert/strict";

const baseURL = process.env.CAIRN_URL;
const apiKey = process.env.CAIRN_KEY;
assert.ok(baseURL && apiKey, "set CAIRN_URL and CAIRN_KEY");
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

const ids = [];
for await (const m of client.models.list()) ids.push(m.id);
assert.deepEqual(ids, ["cairn"], `models: ${ids}`);

const c = await client.completions.create({ model: "cairn", prompt: "ROMEO:", max_tokens: 24, temperature: 0.8, seed: 7 });
assert.equal(c.object, "text_completion");
assert.equal(c.choices.length, 1);
assert.equal(c.choices[0].text.length, 24, `completion ${JSON.stringify(c.choices[0].text)}`);
assert.equal(c.choices[0].finish_reason, "length");
assert.deepEqual(c.usage, { prompt_tokens: 6, completion_tokens: 24, total_tokens: 30 });

// The same request streamed, with the same seed, gives the same text.
const stream = await client.completions.create({ model: "cairn", prompt: "ROMEO:", max_tokens: 24, temperature: 0.8, seed: 7, stream: true });
let text = "", chunks = 0, finish = null;
for await (const ch of stream) {
  chunks++;
  text += ch.choices[0]?.text ?? "";
  finish = ch.choices[0]?.finish_reason ?? finish;
}
assert.equal(text, c.choices[0].text, "streamed text differs from the completion with the same seed");
assert.ok(chunks >= 2, `only ${chunks} chunks`);
assert.equal(finish, "length");

// A stop sequence ends the completion before it: with the same seed the
// text is the completion's up to the stop's first occurrence.
const stop = c.choices[0].text.slice(10, 12);
const s = await client.completions.create({ model: "cairn", prompt: "ROMEO:", max_tokens: 24, temperature: 0.8, seed: 7, stop: [stop] });
assert.equal(s.choices[0].text, c.choices[0].text.slice(0, c.choices[0].text.indexOf(stop)), `stop ${JSON.stringify(stop)}`);
assert.equal(s.choices[0].finish_reason, "stop");

// Refusals: a bad key, a bad request.
const bad = new OpenAI({ baseURL, apiKey: "sk-not-a-key", maxRetries: 0 });
await assert.rejects(bad.completions.create({ model: "cairn", prompt: "x", max_tokens: 1 }), (e) => e.status === 401);
await assert.rejects(client.completions.create({ model: "cairn", prompt: "x", max_tokens: 0 }), (e) => e.status === 400);
await assert.rejects(client.completions.create({ model: "other", prompt: "x", max_tokens: 1 }), (e) => e.status === 400);

console.log(`openai client: models, completion, stream (${chunks} chunks), stop and refusals all as expected`);
