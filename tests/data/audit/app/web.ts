// The same assistant's web front end (TypeScript, the openai npm package).
import OpenAI from "openai";

const openai = new OpenAI();

export async function alternatives(question: string) {
  const completion = await openai.chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: question }],
    logprobs: true,
    top_logprobs: 10, // show ten alternatives per token
  });
  return completion.choices[0].logprobs?.content;
}
