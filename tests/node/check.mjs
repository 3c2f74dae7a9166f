// Drives the official openai npm client against a running simulator (base URL in GENGUARD_SIM_URL)
// and prints one JSON object of findings for the pytest test to judge.
import OpenAI from "openai";

const baseURL = process.env.GENGUARD_SIM_URL;
const client = new OpenAI({ baseURL, apiKey: "sk-node", maxRetries: 0, timeout: 2000 });
const messages = [{ role: "user", content: "hello from node" }];
const out = { errors: {} };

out.models = (await client.models.list()).data.map((m) => m.id);
const plain = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
out.plain = { text: plain.choices[0].message.content, finish: plain.choices[0].finish_reason, usage: plain.usage };

let streamed = "";
let streamUsage = null;
let streamFinish = null;
const stream = await client.chat.completions.create({
  model: "gpt-4o-mini", messages, stream: true, stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.usage) streamUsage = chunk.usage;
  for (const c of chunk.choices) {
    streamed += c.delta.content ?? "";
    streamFinish = c.finish_reason ?? streamFinish;
  }
}
out.stream = { text: streamed, finish: streamFinish, usage: streamUsage };

const tool = {
  type: "function",
  function: { name: "lookup", parameters: { type: "object", properties: { q: { type: "string" } }, required: ["q"] } },
};
const called = await client.chat.completions.create({ model: "gpt-4o-mini", messages, tools: [tool] });
out.tool = {
  finish: called.choices[0].finish_reason,
  name: called.choices[0].message.tool_calls[0].function.name,
  args: JSON.parse(called.choices[0].message.tool_calls[0].function.arguments),
};

for (const scenario of JSON.parse(process.env.GENGUARD_SCENARIOS)) {
  try {
    await client.chat.completions.create({ model: "gpt-4o-mini", messages },
      { headers: { "x-genguard-scenario": scenario } });
    out.errors[scenario] = "no error";
  } catch (err) {
    out.errors[scenario] = err.constructor.name;
  }
}
console.log(JSON.stringify(out));
