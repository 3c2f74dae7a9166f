// What an application using the official openai npm client sees, one chat call at a time.
//
//   node call.mjs BASE_URL [plain|stream|responses] [PROMPT]   one call, one JSON line
//   node call.mjs                                    one call per JSON line read on stdin, one JSON line each
//
// A stdin line is {"baseURL", "mode": "plain"|"stream"|"responses" (client.responses.create), "prompt", "model"?, "maxRetries"?, "timeout"? (ms),
// "tools"? (passed on as the request's tools; the answer then carries "toolCalls": [{name, arguments}])};
// the SDK's own retries stay at its default (2) unless maxRetries says otherwise. Each answer line is
// {"ok": true, "text", "finish", "chunks", ...} or {"ok": false, "error": {"class", "status", "code", ...}},
// with the genguard headers of the answer and "requests": every HTTP request the SDK made for the call
// (counted by the fetch it was given), each with its x-stainless-retry-count and the status it got.
import { createInterface } from "node:readline";
import OpenAI from "openai";

const HEADERS = [
  "x-genguard-code", "x-genguard-kind", "x-genguard-attempts", "x-genguard-model", "x-genguard-request-ids",
  "x-should-retry", "retry-after-ms", "content-type",
];

function pick(headers) {
  const out = {};
  if (!headers) return out;
  for (const name of HEADERS) {
    const value = typeof headers.get === "function" ? headers.get(name) : headers[name];
    if (value !== null && value !== undefined) out[name] = value;
  }
  return out;
}

function countingFetch(log) {
  return async (url, init) => {
    const sent = { retryCount: new Headers(init?.headers).get("x-stainless-retry-count") };
    log.push(sent);
    try {
      const response = await fetch(url, init);
      sent.status = response.status;
      return response;
    } catch (err) {
      sent.failed = err?.name ?? String(err);
      throw err;
    }
  };
}

async function call({ baseURL, mode = "plain", prompt = "Hello from node", model = "gpt-4o-mini", maxRetries, timeout = 20000, tools }) {
  const requests = [];
  const client = new OpenAI({
    baseURL, apiKey: "sk-node-app-key", timeout, fetch: countingFetch(requests),
    ...(maxRetries === undefined ? {} : { maxRetries }),
  });
  const messages = [{ role: "user", content: prompt }];
  const started = performance.now();
  const out = { mode, requests };
  let chunks = 0;
  let text = "";
  let finish = null;
  const toolCalls = [];
  const request = { model, messages, ...(tools ? { tools } : {}) };
  try {
    if (mode === "stream") {
      const { data: stream, response } = await client.chat.completions
        .create({ ...request, stream: true })
        .withResponse();
      out.headers = pick(response.headers);
      for await (const chunk of stream) {
        chunks += 1;
        for (const choice of chunk.choices) {
          text += choice.delta?.content ?? "";
          finish = choice.finish_reason ?? finish;
          for (const part of choice.delta?.tool_calls ?? []) {
            // A tool call streams as pieces of its arguments, joined by the call's index.
            const call = (toolCalls[part.index] ??= { name: "", arguments: "" });
            call.name += part.function?.name ?? "";
            call.arguments += part.function?.arguments ?? "";
          }
        }
      }
    } else if (mode === "responses") {
      // The Responses API, not streamed: its text and status ("completed", "incomplete"...) as finish.
      const { data, response } = await client.responses
        .create({ model, input: prompt, ...(tools ? { tools } : {}) })
        .withResponse();
      out.headers = pick(response.headers);
      text = data.output_text;
      finish = data.status;
      out.incomplete = data.incomplete_details?.reason ?? null;
    } else {
      const { data, response } = await client.chat.completions.create(request).withResponse();
      out.headers = pick(response.headers);
      text = data.choices[0].message.content;
      finish = data.choices[0].finish_reason;
      for (const c of data.choices[0].message.tool_calls ?? []) {
        toolCalls.push({ name: c.function.name, arguments: c.function.arguments });
      }
    }
    Object.assign(out, { ok: true, text, finish, chunks, toolCalls });
  } catch (err) {
    out.ok = false;
    out.chunks = chunks;
    out.text = text; // what reached the application before the error
    out.error = {
      class: err?.constructor?.name ?? typeof err,
      isAPIError: err instanceof OpenAI.APIError,
      status: err?.status ?? null,
      code: err?.code ?? null,
      type: err?.type ?? null,
      message: String(err?.message ?? err),
      headers: pick(err?.headers),
    };
  }
  out.elapsedMs = Math.round(performance.now() - started);
  return out;
}

const [baseURL, mode, prompt] = process.argv.slice(2);
if (baseURL) {
  console.log(JSON.stringify(await call({ baseURL, mode, prompt })));
} else {
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (!line.trim()) continue;
    let answer;
    try {
      answer = await call(JSON.parse(line));
    } catch (err) {
      answer = { ok: false, driverError: String(err?.stack ?? err) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  }
}
