"""`faregate lint FILE`: what breaks provider prompt caching in a prompt, a request or a request log.

The input kind is recognised by its content, not its name; every finding is located and, given a
model and a request rate (or a log's own traffic), costed per month. Exit codes: 0 no findings,
1 findings (so CI can gate on it), 2 bad input. Modules, in reading order:

``report``    `Item`, `LintReport` and `LintInputError`: what a lint run produces.
``inputs``    recognising the input (prompt text, request body or request log) and reading it.
``costs``     the prefix tokens a changed span re-bills and the price of a miss.
``prompt``    a prompt text or one request body, costed from `--requests-per-day`.
``log_scan``  a request log: findings grouped per feature, misses counted in file order.
``render``    the report as a Rich table or as JSON.
``command``   `run_lint` and `lint_file`: options, dispatch by input kind, sorting, exit code.
"""

from __future__ import annotations

from faregate.prompt_cache.lint.command import FORMATS, lint_file, run_lint
from faregate.prompt_cache.lint.costs import DAYS_PER_MONTH
from faregate.prompt_cache.lint.log_scan import MIN_PERIOD_S
from faregate.prompt_cache.lint.render import WHY, render_table
from faregate.prompt_cache.lint.report import Item, LintInputError, LintReport

__all__ = [
    "DAYS_PER_MONTH",
    "FORMATS",
    "MIN_PERIOD_S",
    "WHY",
    "Item",
    "LintInputError",
    "LintReport",
    "lint_file",
    "render_table",
    "run_lint",
]
