"""What a call admitted under limits owes once it ends: the contract between the check before the call
(services/limits.py) and the accounting after it (services/budget_spend.py, the Logs writer).

A CallRecord carries its Charges; writing its Logs row adds its tokens to the minute counters of
`rate_keys` (in window `window`) and its cost and tokens to each budget's period in `budgets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mindroute.services.limit_rules import LimitRule


@dataclass(frozen=True)
class BudgetCharge:
    """One budget rule the call counts against, in the period it was admitted in."""

    rule: LimitRule
    period_key: str


@dataclass(frozen=True)
class Charges:
    rate_keys: tuple[str, ...]  # counted targets with a tokens-per-minute rule
    window: int  # the minute (since the epoch) the call was admitted in
    budgets: tuple[BudgetCharge, ...]

    @property
    def empty(self) -> bool:
        return not self.rate_keys and not self.budgets


class Charged(Protocol):
    """What the accounting reads of a finished call (call_log.CallRecord is one)."""

    @property
    def charges(self) -> Charges | None: ...
    @property
    def cost_usd(self) -> float | None: ...
    @property
    def total_tokens(self) -> int | None: ...
    @property
    def prompt_tokens(self) -> int | None: ...
    @property
    def completion_tokens(self) -> int | None: ...
