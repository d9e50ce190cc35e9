"""One OS process of the two-process counter test: `python -m tests.limit_worker URL KEY RPM CALLS NOW GO_FILE`
runs CALLS concurrent limits.acheck calls on one event loop once GO_FILE exists (so both processes start
together), and prints how many were admitted as JSON. MINDROUTE_REDIS_URL, when set, puts the counters in Redis."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from mindroute.db import make_engine
from mindroute.services import limits
from mindroute.services.limit_counters import aclose_pools
from tests.limit_helpers import make_rule


async def main(url: str, key: str, rpm: int, calls: int, now: datetime, go: Path) -> dict[str, int]:
    engine = make_engine(url)
    rule = make_rule(key, rpm=rpm)
    await limits.acheck(engine, (make_rule(rpm=1),), now)  # connections open before the start
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)

    async def one(i: int) -> limits.LimitCheck:
        await asyncio.sleep((i % 25) * 0.002)  # spread over 50 ms, so the two processes' calls interleave
        return await limits.acheck(engine, (rule,), now)

    results = await asyncio.gather(*(one(i) for i in range(calls)))
    await aclose_pools()
    engine.dispose()
    return {"admitted": sum(r.refusal is None for r in results), "refused": sum(r.refusal is not None for r in results)}


if __name__ == "__main__":
    url, key, rpm, calls, now, go = sys.argv[1:7]
    outcome = asyncio.run(main(url, key, int(rpm), int(calls), datetime.fromisoformat(now), Path(go)))
    print(json.dumps(outcome))
