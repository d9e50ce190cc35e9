// A streamed answer, usage last.
import { client, model, report } from "./client.mjs";

const stream = await client().chat.completions.create({
  model,
  messages: [{ role: "user", content: "stream from node" }],
  stream: true,
  stream_options: { include_usage: true },
});
let content = "";
let chunks = 0;
let finish_reason = null;
let usage = null;
for await (const chunk of stream) {
  chunks += 1;
  for (const choice of chunk.choices) {
    content += choice.delta?.content ?? "";
    finish_reason = choice.finish_reason ?? finish_reason;
  }
  usage = chunk.usage ?? usage;
}
report({ content, chunks, finish_reason, usage });
