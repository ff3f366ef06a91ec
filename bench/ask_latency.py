"""Ask latency of the extractive planner, warm: retrieval + plan + validation, in one process.

Uses the knowledge base of ``OPSFLOW_DATA_DIR`` (ingest the sample runbooks or the benchmark corpus
first); each question is asked once to warm up, then ``--rounds`` times measured.

    OPSFLOW_DATA_DIR=/tmp/kb .venv/bin/opsflow ingest samples/runbooks
    OPSFLOW_DATA_DIR=/tmp/kb .venv/bin/python -m bench.ask_latency
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench._common import summary
from bot.app import open_knowledge
from bot.cli_common import load_settings

QUESTIONS = (
    "Apps get 'FATAL: sorry, too many clients already' from Postgres. What do I do?",
    "Replica is 5 minutes behind the primary, what do I check?",
    "pods in namespace payments keep restarting with CrashLoopBackOff",
    "redis keeps evicting keys",
    "RabbitMQ queue keeps growing and consumers look stuck",
    "the TLS certificate of the ingress expires in three days",
)


async def measure(rounds: int) -> dict[str, float]:
    async with open_knowledge(load_settings()) as kb:
        for question in QUESTIONS:
            await kb.service.answer(question, planner="extractive")
        took = []
        for _ in range(rounds):
            for question in QUESTIONS:
                started = time.perf_counter()
                await kb.service.answer(question, planner="extractive")
                took.append((time.perf_counter() - started) * 1000)
    return summary(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(measure(args.rounds))
    print(
        f"ask (extractive, warm), {args.rounds * len(QUESTIONS)} asks: p50 {result['p50']} ms, p95 {result['p95']} ms"
    )


if __name__ == "__main__":
    main()
