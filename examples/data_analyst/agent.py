"""The Data Analyst example agent: a tool loop over CSV files in its workspace.

    echo "Remove duplicate rows from orders.csv" | python agent.py [--model rule|<model uri>]

The working directory is the workspace. Run by coSTAR's harness, its spans (tool calls, model
calls) are sent back to the harness; run by hand, it just answers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analyst.loop import default_skills_dir, run_agent
from analyst.tools import Toolbox

from costar.trace.export import harness_recording


def make_policy(model: str):
    if model == "rule":
        from analyst.rule_policy import RulePolicy

        return RulePolicy()
    from analyst.model_policy import ModelPolicy

    return ModelPolicy(model)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="?", help="the task (default: read from stdin)")
    parser.add_argument("--model", default=os.environ.get("ANALYST_MODEL", "rule"))
    parser.add_argument("--skills", default=os.environ.get("ANALYST_SKILLS", str(default_skills_dir())))
    parser.add_argument("--max-steps", type=int, default=12)
    args = parser.parse_args()
    prompt = args.prompt if args.prompt is not None else sys.stdin.read()
    toolbox = Toolbox(workspace=Path.cwd(), skills_dir=Path(args.skills))
    with harness_recording("data-analyst", attributes={"input.value": prompt}) as rec:
        answer = run_agent(prompt.strip(), toolbox, make_policy(args.model), max_steps=args.max_steps)
        rec.root.set_attribute("output.value", answer)
    print(answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
