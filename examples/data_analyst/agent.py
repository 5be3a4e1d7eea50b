"""The Data Analyst example agent: a tool loop over CSV files in its workspace.

    echo "Remove duplicate rows from orders.csv" | python agent.py [--model local:/smollm2|rule|<model uri>]

The model comes from --model, else $ANALYST_MODEL, else the embedded local:/smollm2; `rule` is
a deterministic policy that needs no model. The working directory is the workspace. Run by
coSTAR's harness, its spans (tool calls, model calls) are sent back to the harness; run by hand,
it just answers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analyst.loop import Policy, default_skills_dir, run_agent
from analyst.tools import ONE_CALL_TOOLS, Toolbox

from costar.models import ModelConfigError, ModelError
from costar.trace.export import harness_recording

DEFAULT_MODEL = "local:/smollm2"


def make_policy(model: str, *, max_tokens: int, context_tokens: int | None) -> Policy:
    if model == "rule":
        from analyst.rule_policy import RulePolicy

        return RulePolicy()
    from analyst.model_policy import ModelPolicy

    return ModelPolicy(model, max_tokens=max_tokens, context_tokens=context_tokens, finishing_tools=ONE_CALL_TOOLS)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("prompt", nargs="?", help="the task (default: read from stdin)")
    parser.add_argument("--model", default=os.environ.get("ANALYST_MODEL") or DEFAULT_MODEL,
                        help=f"'rule' or a model URI (default: $ANALYST_MODEL or {DEFAULT_MODEL})")
    parser.add_argument("--skills", default=os.environ.get("ANALYST_SKILLS", str(default_skills_dir())))
    parser.add_argument("--sandbox", choices=("auto", "on", "off"), default=os.environ.get("ANALYST_SANDBOX", "auto"),
                        help="run_python in a bubblewrap sandbox: auto (when available, the default), on, off")
    parser.add_argument("--max-steps", type=int, default=8, help="model calls per task, the last one answers")
    parser.add_argument("--max-tokens", type=int, default=256, help="tokens a model may generate per step")
    parser.add_argument("--context-tokens", type=int, default=None,
                        help="the model's context window (default: n_ctx for local models, 32000 otherwise)")
    args = parser.parse_args()
    prompt = args.prompt if args.prompt is not None else sys.stdin.read()
    toolbox = Toolbox(workspace=Path.cwd(), skills_dir=Path(args.skills), sandbox=args.sandbox)
    try:
        policy = make_policy(args.model, max_tokens=args.max_tokens, context_tokens=args.context_tokens)
    except ModelConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with harness_recording("data-analyst", attributes={"input.value": prompt, "analyst.model": args.model}) as rec:
        try:
            answer = run_agent(prompt.strip(), toolbox, policy, max_steps=args.max_steps)
        except ModelError as exc:
            # The model is unreachable or keeps failing: a clean failure, recorded, not a traceback.
            rec.root.set_attribute("output.value", "")
            print(f"error: {exc}", file=sys.stderr)
            return 1
        rec.root.set_attribute("output.value", answer)
    print(answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
