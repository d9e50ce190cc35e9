// The official openai client, loaded from the folder the Python test installed it in (OPENAI_NODE_DIR),
// pointed at MindRoute (BASE_URL, API_KEY); each script prints one JSON object for the test to check.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const require = createRequire(`${process.env.OPENAI_NODE_DIR}/`);
const loaded = await import(pathToFileURL(require.resolve("openai")).href);
const OpenAI = loaded.OpenAI ?? loaded.default?.OpenAI ?? loaded.default;

export const model = process.env.MODEL;

export function client() {
  return new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY, maxRetries: 0, timeout: 20000 });
}

export function report(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}
