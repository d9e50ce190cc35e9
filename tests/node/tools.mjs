// A tool call, the tool's result sent back, and the final answer; the call streamed too.
import { client, model, report } from "./client.mjs";

const api = client();
const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Current weather for a city",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  },
];
const messages = [{ role: "user", content: "What is the weather in Paris?" }];
const first = await api.chat.completions.create({ model, messages, tools, tool_choice: "auto" });
const [call] = first.choices[0].message.tool_calls;
messages.push(first.choices[0].message);
messages.push({ role: "tool", tool_call_id: call.id, content: "sunny from node" });
const second = await api.chat.completions.create({ model, messages, tools });

const stream = await api.chat.completions.create({ model, messages: messages.slice(0, 1), tools, stream: true });
const streamed = {};
for await (const chunk of stream) {
  for (const piece of chunk.choices[0]?.delta?.tool_calls ?? []) {
    const entry = (streamed[piece.index] ??= { id: piece.id, name: piece.function?.name, arguments: "" });
    entry.arguments += piece.function?.arguments ?? "";
  }
}
report({
  first_finish: first.choices[0].finish_reason,
  call: { id: call.id, name: call.function.name, arguments: call.function.arguments },
  answer: second.choices[0].message.content,
  second_finish: second.choices[0].finish_reason,
  streamed: Object.values(streamed),
});
