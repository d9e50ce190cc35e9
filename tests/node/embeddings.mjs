// Embeddings of two texts (the client asks for base64 and decodes it).
import { client, model, report } from "./client.mjs";

const answer = await client().embeddings.create({ model, input: ["first text", "second text"] });
report({ vectors: answer.data.map((item) => Array.from(item.embedding)), indexes: answer.data.map((item) => item.index) });
