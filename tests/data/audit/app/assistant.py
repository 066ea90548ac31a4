"""A small assistant written against OpenAI: the audit's README example (never run by the tests)."""

from openai import OpenAI

client = OpenAI()


def answer(question: str) -> str:
    response = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": question}],
        stop=["\n\n"],
        max_tokens=256,
    )
    choice = response.choices[0]
    if choice.finish_reason == "length":
        raise RuntimeError("the answer was cut")
    return choice.message.content


def stream_answer(question: str):
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=[{"role": "user", "content": question}])
    for chunk in stream:
        if chunk.usage is not None:
            print("tokens:", chunk.usage.total_tokens)
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content
