"""``costar run --affected-by BASE``: only the scenarios a change since BASE can have affected run, each
with the reason it was picked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from costar.store.sqlite import SQLiteStore
from costar.testing import ScriptedModelServer
from tests.support.cli import child_env, costar_cmd
from tests.support.mcp_shop.shop import AGENT, SERVER_V1, rules, scenario_docs


def costar(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, env=child_env(), capture_output=True, text=True,
                          timeout=300)


def write_config(root: Path, model_url: str, **agent_extra: str) -> None:
    (root / "costar.yaml").write_text(yaml.safe_dump({
        "suite": "scenarios",
        "agent": {"type": "command", "name": "shop-agent", "command": ["python", str(AGENT)], **agent_extra,
                  "env": {"SHOP_MCP": str(root / "servers" / "shop.py"), "MODEL_BASE_URL": model_url}},
        "mcp_servers": {"shop": {"command": ["python", "servers/shop.py"]}},
    }))


def run_ids(root: Path) -> list[str]:
    with SQLiteStore(root / ".costar") as st:
        return [r.run_id for r in st.list_runs()]


@pytest.mark.slow
def test_only_the_scenarios_that_used_a_changed_tool_run(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "shop.py").write_text(SERVER_V1.read_text())
    for name, doc in scenario_docs(trials=1).items():
        (tmp_path / "scenarios" / name).write_text(yaml.safe_dump(doc))
    with ScriptedModelServer(rules()) as model:
        write_config(tmp_path, model.base_url)
        base = costar(tmp_path, "run", "--id-file", "base.txt")
        assert base.returncode == 0, base.stdout + base.stderr
        base_id = (tmp_path / "base.txt").read_text().strip()

        unchanged = costar(tmp_path, "run", "--affected-by", base_id)
        assert unchanged.returncode == 0, unchanged.stderr
        assert "no scenario is affected" in unchanged.stdout
        assert "skip 2 scenario(s)" in unchanged.stdout
        assert run_ids(tmp_path) == [base_id]  # nothing ran, no run was made

        # The server renames list_orders' field (and nothing else): only "orders" used that tool.
        server = tmp_path / "servers" / "shop.py"
        server.write_text(server.read_text().replace("customer_id: str, status", "customer_ref: str, status")
                          .replace("ORDERS.get(customer_id", "ORDERS.get(customer_ref"))
        picked = costar(tmp_path, "run", "--affected-by", base_id, "--id-file", "head.txt")
        assert picked.returncode == 1, picked.stdout + picked.stderr  # orders fails against the new server
        assert "run  orders  tool changed: shop/list_orders (breaking: input.customer_id: renamed to customer_ref)" \
            in picked.stdout
        assert "skip 1 scenario(s) nothing has changed for: tier" in picked.stdout
        with SQLiteStore(tmp_path / ".costar") as st:
            head = st.get_run((tmp_path / "head.txt").read_text().strip())
            assert [k[1] for k in st.trace_keys(head.run_id)] == ["orders"]
            head_trace = st.trace_ids(head.run_id)[0]
        # The definitions the two runs (or two traces) recorded diff like snapshots do.
        runs = json.loads(costar(tmp_path, "mcp", "diff", f"run:{base_id}", f"run:{head.run_id}", "--json").stdout)[0]
        assert [(t["name"], t["breaking"]) for t in runs["tools"]] == [("list_orders", True)]
        assert (runs["base"]["kind"], runs["head"]["kind"]) == ("run", "run")
        traced = costar(tmp_path, "mcp", "diff", f"trace:{head_trace}", "snapshot:shop", "--json")
        assert json.loads(traced.stdout)[0]["tools"] == []  # the trace saw what the server offers now

        # A new scenario, and then a changed agent.
        (tmp_path / "scenarios" / "tier2.yaml").write_text(yaml.safe_dump({**scenario_docs(1)["tier.yaml"],
                                                                          "id": "tier-again"}))
        new = costar(tmp_path, "run", "--affected-by", base_id)
        assert "run  tier-again  not in base" in new.stdout
        write_config(tmp_path, model.base_url, version="2")
        everything = costar(tmp_path, "run", "--affected-by", base_id)
    assert everything.stdout.count("agent changed: version — → 2") == 3


def test_affected_by_an_unknown_run_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "a.yaml").write_text(yaml.safe_dump({"id": "a", "prompt": "hi"}))
    (tmp_path / "costar.yaml").write_text(yaml.safe_dump({"suite": "scenarios", "agent": "cmd:echo hi"}))
    assert costar(tmp_path, "run").returncode == 0
    proc = costar(tmp_path, "run", "--affected-by", "no-such-run")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: no run 'no-such-run'")
    resumed = costar(tmp_path, "run", "--affected-by", "latest", "--resume", "latest")
    assert resumed.returncode == 2
    assert "cannot be combined with --resume" in resumed.stderr
