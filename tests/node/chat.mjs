// A whole answer.
import { client, model, report } from "./client.mjs";

const completion = await client().chat.completions.create({
  model,
  messages: [
    { role: "system", content: "Be brief." },
    { role: "user", content: "hello from node" },
  ],
  max_tokens: 50,
});
const [choice] = completion.choices;
report({ content: choice.message.content, finish_reason: choice.finish_reason, model: completion.model, usage: completion.usage ?? null });
