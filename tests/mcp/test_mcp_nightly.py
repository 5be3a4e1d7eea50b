"""The nightly flow end to end, as the generated workflow runs it (issue 16's acceptance test).

A real agent (``tests/support/mcp_shop/shop_agent.py``, the official ``mcp`` SDK, driven by the scripted model)
uses a real MCP server (``MCPServer`` over stdio) declared in costar.yaml. ``costar ci init github``
writes the nightly workflow; its steps run here, as GitHub would run them, on two nights. Between
the nights the server is upgraded to version 2, which renames ``list_orders``' field ``customer_id``
to ``customer_ref`` and rewords ``lookup_customer``'s description. The second night must detect
both, call the rename breaking and the rewording not, and attribute the regressed scenario
(``orders``, which uses both tools) to the rename, not to the rewording.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from costar.testing import ScriptedModelServer
from tests.support.cli import costar_cmd
from tests.support.mcp_shop.shop import AGENT, SERVER_V1, SERVER_V2, rules, scenario_docs
from tests.support.workflow_steps import GithubJob, base_env

TRIALS = 5  # 5/5 → 0/5 is significant after Holm's adjustment over the two scenarios
NIGHTLY_STEPS = ["suite", "snapshot", "mcp_diff", "compare", "gate"]


def make_project(root: Path, model_url: str) -> Path:
    (root / "scenarios").mkdir(parents=True)
    (root / "servers").mkdir()
    shutil.copy(SERVER_V1, root / "servers" / "shop_server.py")
    for name, doc in scenario_docs(TRIALS).items():
        (root / "scenarios" / name).write_text(yaml.safe_dump(doc))
    (root / "costar.yaml").write_text(yaml.safe_dump({
        "suite": "scenarios",
        "agent": {"type": "command", "name": "shop-agent", "command": ["python", str(AGENT)],
                  "env": {"SHOP_MCP": str(root / "servers" / "shop_server.py"), "MODEL_BASE_URL": model_url}},
        "mcp_servers": {"shop": {"command": ["python", "servers/shop_server.py"]}},
        "concurrency": 4,
    }))
    return root


def costar(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=project, env=base_env(), capture_output=True, text=True,
                          timeout=300)


def night(project: Path, workflow: Path) -> dict[str, int]:
    job = GithubJob.load(workflow, "nightly", project, context={}, env=base_env())
    codes = {step: job.run(step, check=False).returncode for step in NIGHTLY_STEPS}
    codes.update({f"{step}.exit": int(job.outputs.get(step, {}).get("exit", "0")) for step in NIGHTLY_STEPS[:4]})
    return codes


@pytest.mark.slow
def test_the_nightly_flow_catches_both_changes_and_blames_the_breaking_one(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    with ScriptedModelServer(rules()) as model:
        project = make_project(tmp_path / "project", model.base_url)
        init = costar(project, "ci", "init", "github")
        assert init.returncode == 0, init.stderr
        workflow = project / ".github" / "workflows" / "costar-nightly.yml"

        first = night(project, workflow)
        assert first["gate"] == 0, first
        assert first["suite.exit"] == 0  # every scenario passes against version 1
        assert "nothing to compare yet" in (project / "costar-mcp.md").read_text()
        # The store goes to the next night as an artifact, as in CI.
        shutil.move(project / ".costar", artifact)
        shutil.move(artifact, project / ".costar")

        shutil.copy(SERVER_V2, project / "servers" / "shop_server.py")  # upgraded under the agent
        second = night(project, workflow)

        diff = json.loads(costar(project, "mcp", "diff", "shop~1", "shop", "--json").stdout)[0]
        comparison = json.loads(costar(project, "compare", "tag:nightly~1", "tag:nightly", "--json").stdout)
    mcp_md = (project / "costar-mcp.md").read_text()
    nightly_md = (project / "costar-nightly.md").read_text()

    # The night fails, for the breaking change and the regression; the snapshot itself worked.
    assert second["gate"] == 1
    assert second["snapshot.exit"] == 0
    assert second["mcp_diff.exit"] == 1
    assert second["compare.exit"] == 1

    # Both changes are detected and classified.
    tools = {t["name"]: t for t in diff["tools"]}
    assert set(tools) == {"list_orders", "lookup_customer"}
    assert tools["list_orders"]["breaking"] is True
    assert [(c["kind"], c["path"], c["after"]) for c in tools["list_orders"]["changes"]] == [
        ("field renamed", "input.customer_id", "customer_ref")]
    assert tools["lookup_customer"]["breaking"] is False
    assert [c["kind"] for c in tools["lookup_customer"]["changes"]] == ["description changed"]
    assert diff["server_versions"] == [["shop", "1.0.0", "2.0.0"]]

    # The regressed scenario is attributed to the breaking change, not to the rewording.
    changes = {s["scenario_id"]: s["change"] for s in comparison["scenarios"]}
    assert changes == {"orders": "regressed", "tier": "unchanged"}
    attribution = {s["scenario_id"]: s for s in comparison["attribution"]["scenarios"]}
    orders = attribution["orders"]
    assert orders["cause"] == "tool changed"
    assert comparison["attribution"]["agent"]["changed"] is False
    likely = [t["name"] for t in orders["tools"] if t["likely_cause"]]
    not_likely = [t["name"] for t in orders["tools"] if not t["likely_cause"]]
    assert likely == ["list_orders"]
    assert not_likely == ["lookup_customer"]
    failing = next(t for t in orders["tools"] if t["name"] == "list_orders")
    assert (failing["head_errors"], failing["head_calls"]) == (TRIALS, TRIALS)
    assert (failing["base_errors"], failing["base_calls"]) == (0, TRIALS)

    # What the job summary says.
    assert "❗" in mcp_md
    assert "customer\\_id: renamed to customer\\_ref" in mcp_md
    likely_line = next(line for line in nightly_md.splitlines() if line.startswith("- Likely cause"))
    also_line = next(line for line in nightly_md.splitlines() if line.startswith("- Also changed"))
    assert "list_orders" in likely_line
    assert "lookup_customer" not in likely_line
    assert "lookup_customer" in also_line
    assert "Significant regression" in nightly_md
