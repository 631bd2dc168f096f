// openai-node reading a resumable stream (ids on every event, keep-alive comment lines between):
// prints {"ok": true, "text": ...} with the streamed text. Used by tests/test_resumable_memory.py.
//   node resumable.mjs BASE_URL KEY HEADERS_JSON
import OpenAI from 'openai';

const [baseURL, apiKey, headers] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, defaultHeaders: JSON.parse(headers) });
try {
  const stream = await client.chat.completions.create({
    model: 'grok-4-1-fast-non-reasoning', stream: true,
    messages: [{ role: 'user', content: 'Write a short story about a space adventure' }],
  });
  let text = '';
  for await (const chunk of stream) { text += chunk.choices[0]?.delta?.content ?? ''; }
  console.log(JSON.stringify({ ok: true, text }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, name: e.constructor.name, message: e.message }));
}
