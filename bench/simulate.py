"""Benchmark the simulated vision LLM: does it hold concurrency, and what does a request cost the simulator itself?

    /tmp/venv/bin/python bench/simulate.py [--faces 2000] [--requests 128]

1. Throughput with 200 ms simulated latency at concurrency 1, 8, 32 and 64 (official `AsyncOpenAI` client, n=4,
   strict JSON schema), as requests/s and the speed-up over concurrency 1 (ideal: the concurrency).
2. The simulator's own cost per request without latency (sequential, sync client), so a test suite knows what many
   requests cost.
3. Image identification against a truth table of `--faces` faces: a first sight (thumbnail + nearest neighbour) vs
   a repeat of the same bytes (content-hash cache), per lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import time

import openai
import PIL.Image

from seke_hf.schema import AUS, EXPRESSIONS
from seke_hf.simulate import Labels, SimulatedVLLM, TruthTable
from seke_hf.synthetic.faces import draw_face

SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "labels",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "expression": {"type": "string", "enum": EXPRESSIONS},
                "valence": {"type": "number"},
                "arousal": {"type": "number"},
                "action_units": {"type": "array", "items": {"type": "string", "enum": AUS}},
                "description": {"type": "string"},
            },
            "required": ["expression", "valence", "arousal", "action_units", "description"],
            "additionalProperties": False,
        },
    },
}


def jpeg(image: PIL.Image.Image, size: int = 64) -> bytes:
    buffer = io.BytesIO()
    image.resize((size, size)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def messages(data: bytes) -> list[dict]:
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    content = [{"type": "text", "text": "Label this face."}, {"type": "image_url", "image_url": {"url": url}}]
    return [{"role": "user", "content": content}]


async def throughput(server: SimulatedVLLM, images: list[bytes], concurrency: int, requests: int) -> float:
    semaphore = asyncio.Semaphore(concurrency)
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sim", max_retries=0) as client:

        async def one(i: int) -> None:
            async with semaphore:
                await client.chat.completions.create(
                    model="m", messages=messages(images[i % len(images)]), n=4, response_format=SCHEMA
                )

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        return requests / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=128)
    args = parser.parse_args()

    faces = [draw_face(i, expression=EXPRESSIONS[i % 8], size=(96, 96)) for i in range(args.faces)]
    truth = TruthTable()
    for i, face in enumerate(faces):
        truth.add(f"face/{i}", Labels(EXPRESSIONS[i % 8], 0.0, 0.0), face, difficulty=(i % 10) / 9)
    images = [jpeg(face) for face in faces[:256]]

    print(f"1. throughput, 200 ms latency, {args.requests} requests of n=4 (ideal speed-up = concurrency)")
    print("| concurrency | requests/s | speed-up vs 1 |\n|---:|---:|---:|")
    with SimulatedVLLM(truth=truth, latency=0.2) as server:
        base = None
        for concurrency in (1, 8, 32, 64):
            count = min(args.requests, max(16, concurrency * 2)) if concurrency == 1 else args.requests
            rate = asyncio.run(throughput(server, images, concurrency, count))
            base = base or rate
            print(f"| {concurrency} | {rate:.1f} | {rate / base:.1f}x |")
        peak = server.stats()["peak_in_flight"]
    print(f"peak requests in flight: {peak}\n")

    print("2. the simulator's own cost (no latency, sequential sync client)")
    with SimulatedVLLM(truth=truth) as server, openai.OpenAI(base_url=server.base_url, api_key="sim") as client:
        for n in (1, 16):
            start = time.perf_counter()
            for i in range(64):
                client.chat.completions.create(model="m", messages=messages(images[i]), n=n, response_format=SCHEMA)
            per_request = (time.perf_counter() - start) / 64
            print(f"n={n}: {per_request * 1000:.1f} ms per request ({per_request * 1000 / n:.2f} ms per choice)")
    print()

    print(f"3. identification against {len(truth)} faces")
    fresh = [jpeg(face, 72) for face in faces[:200]]
    start = time.perf_counter()
    assert all(truth.identify(data).entry is not None for data in fresh)
    first = (time.perf_counter() - start) / len(fresh)
    start = time.perf_counter()
    for data in fresh:
        truth.identify(data)
    repeat = (time.perf_counter() - start) / len(fresh)
    print(f"first sight {first * 1000:.2f} ms, repeat {repeat * 1000:.3f} ms ({first / repeat:.0f}x faster)")


if __name__ == "__main__":
    main()
