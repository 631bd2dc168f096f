// openai-node against the gateway: one chat completion, streamed or not; prints how it failed as
// one JSON line. Used by tests/test_sdk_errors.py; run `npm ci` in this folder first.
//   node errors.mjs BASE_URL KEY stream|whole TEST_ID MAX_RETRIES
import OpenAI from 'openai';

const [baseURL, apiKey, mode, testId, maxRetries] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: Number(maxRetries),
                            defaultHeaders: { 'X-Mock-Test-Id': testId } });
try {
  const result = await client.chat.completions.create({
    model: 'grok-4-1-fast-non-reasoning', stream: mode === 'stream',
    messages: [{ role: 'user', content: 'Write a short story about a space adventure' }],
  });
  if (mode === 'stream') {
    for await (const _chunk of result) { /* read to the end */ }
  }
  console.log(JSON.stringify({ ok: true }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, name: e.constructor.name, status: e.status ?? null,
                               message: e.message, retry: e.headers?.get?.('x-should-retry') ?? null }));
}
