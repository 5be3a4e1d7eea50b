"""``costar mcp snapshot / snapshots / diff`` against real MCP servers, and every bad input the issue names:
one-line errors, exit 2, nothing stored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from costar.store.sqlite import SQLiteStore
from tests.support.cli import child_env, costar_cmd
from tests.support.mcp_shop.shop import SERVER_V1, SERVER_V2, free_port, http_server


def costar(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*costar_cmd(), *args], cwd=cwd, env=child_env(), capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]


def test_snapshot_over_stdio_and_http_then_list_and_diff(tmp_path: Path) -> None:
    snap1 = costar(tmp_path, "mcp", "snapshot", "--json", "--", sys.executable, str(SERVER_V1))
    assert snap1.returncode == 0, snap1.stderr
    first = json.loads(snap1.stdout)[0]
    assert (first["name"], first["server"]["name"], first["server"]["version"]) == ("shop", "shop", "1.0.0")
    assert first["transport"] == "stdio"
    assert sorted(t["name"] for t in first["tools"]) == ["list_orders", "lookup_customer"]
    assert [p["name"] for p in first["prompts"]] == ["support_reply"]
    assert [r["uri"] for r in first["resources"]] == ["shop://policies/returns"]

    with http_server(SERVER_V2) as url:
        snap2 = costar(tmp_path, "mcp", "snapshot", "--url", url, "--name", "shop")
    assert snap2.returncode == 0, snap2.stderr
    assert "shop 2.0.0  2 tools, 1 prompts, 1 resources" in snap2.stdout

    listed = costar(tmp_path, "mcp", "snapshots")
    assert listed.returncode == 0
    assert listed.stdout.count("shop") >= 4

    diff = costar(tmp_path, "mcp", "diff", "shop~1", "shop", "--json")
    assert diff.returncode == 1  # breaking
    d = json.loads(diff.stdout)[0]
    assert d["breaking"] is True
    assert {t["name"]: t["breaking"] for t in d["tools"]} == {"list_orders": True, "lookup_customer": False}
    text = costar(tmp_path, "mcp", "diff", "shop~1")  # HEAD defaults to the newest of the same name
    assert text.returncode == 1
    assert "BREAKING changed  shop/list_orders" in text.stdout
    assert "input.customer_id: renamed to customer_ref" in text.stdout
    md = costar(tmp_path, "mcp", "diff", "shop~1", "shop", "--markdown", "-")
    assert md.stdout.startswith("<!-- costar -->")
    same = costar(tmp_path, "mcp", "diff", "shop", "shop")
    assert same.returncode == 0
    assert "no change" in same.stdout


def test_configured_servers_are_snapshotted_and_diffed_with_their_previous_snapshot(tmp_path: Path) -> None:
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "shop.py").write_text(SERVER_V1.read_text())
    (tmp_path / "costar.yaml").write_text(yaml.safe_dump({"mcp_servers": {
        "shop": {"command": ["python", "servers/shop.py"]}}}))
    assert costar(tmp_path, "mcp", "snapshot").returncode == 0
    first = costar(tmp_path, "mcp", "diff", "--markdown", "mcp.md")
    assert first.returncode == 0
    assert "nothing to compare yet" in (tmp_path / "mcp.md").read_text()
    (tmp_path / "servers" / "shop.py").write_text(SERVER_V2.read_text())
    assert costar(tmp_path, "mcp", "snapshot", "--server", "shop").returncode == 0
    second = costar(tmp_path, "mcp", "diff", "--markdown", "mcp.md")
    assert second.returncode == 1
    assert "1 breaking change" in (tmp_path / "mcp.md").read_text()


def _no_snapshot_stored(tmp_path: Path) -> None:
    if (tmp_path / ".costar" / "costar.db").exists():
        with SQLiteStore(tmp_path / ".costar") as st:
            assert st.mcp_snapshots() == []


def test_a_server_command_that_fails_to_start(tmp_path: Path) -> None:
    missing = costar(tmp_path, "mcp", "snapshot", "--", "no-such-mcp-server-xyz")
    one_line_error(missing, "not found", "no-such-mcp-server-xyz")
    crashing = costar(tmp_path, "mcp", "snapshot", "--", sys.executable, "-c",
                      "import sys; print('config file missing', file=sys.stderr); sys.exit(3)")
    one_line_error(crashing, "closed the connection", "config file missing", "run the command by hand")
    not_mcp = costar(tmp_path, "mcp", "snapshot", "--timeout", "2", "--", sys.executable, "-c",
                     "import time; time.sleep(60)")
    one_line_error(not_mcp, "did not answer within 2s")
    _no_snapshot_stored(tmp_path)


def test_a_url_that_does_not_answer(tmp_path: Path) -> None:
    closed = costar(tmp_path, "mcp", "snapshot", "--url", f"http://127.0.0.1:{free_port()}/mcp")
    one_line_error(closed, "cannot connect to the MCP server", "check that it is running")
    bad = costar(tmp_path, "mcp", "snapshot", "--url", "ftp://example.com/mcp")
    one_line_error(bad, "http(s) URL")
    _no_snapshot_stored(tmp_path)


def test_an_http_endpoint_that_is_not_mcp(tmp_path: Path) -> None:
    from costar.testing import ScriptedModelServer

    with ScriptedModelServer([]) as srv:  # an HTTP server, but not an MCP endpoint
        proc = costar(tmp_path, "mcp", "snapshot", "--timeout", "10", "--url", srv.base_url + "/mcp")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def one_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("one-snapshot")
    assert costar(root, "mcp", "snapshot", "--", sys.executable, str(SERVER_V1)).returncode == 0
    return root


@pytest.mark.parametrize("ref", ["nope", "shop~9", "shop~x", "run:nope", "trace:nope"])
def test_unknown_snapshot_run_or_trace(one_snapshot: Path, ref: str) -> None:
    proc = costar(one_snapshot, "mcp", "diff", ref, "shop")
    one_line_error(proc)
    assert ref.split(":")[-1].split("~")[0] in proc.stderr


def test_usage_mistakes(tmp_path: Path) -> None:
    one_line_error(costar(tmp_path, "mcp", "snapshot"), "mcp_servers:")
    one_line_error(costar(tmp_path, "mcp", "diff"), "mcp_servers:")
    one_line_error(costar(tmp_path, "mcp", "snapshot", "--url", "http://x/mcp", "--", "python", "s.py"), "not both")
    one_line_error(costar(tmp_path, "mcp", "snapshot", "--server", "shop"), "mcp_servers:")
    (tmp_path / "costar.yaml").write_text(yaml.safe_dump({"mcp_servers": {"shop": {"url": "http://x/mcp"}}}))
    one_line_error(costar(tmp_path, "mcp", "snapshot", "--server", "weather"), "no MCP server 'weather'", "shop")
    (tmp_path / "costar.yaml").write_text(yaml.safe_dump({"mcp_servers": {"shop": {"timeout": 3}}}))
    one_line_error(costar(tmp_path, "mcp", "snapshot"), "either 'command'")
    (tmp_path / "costar.yaml").write_text(yaml.safe_dump({"mcp_servers": {
        "shop": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer ${NO_SUCH_TOKEN_VAR}"}}}}))
    one_line_error(costar(tmp_path, "mcp", "snapshot"), "NO_SUCH_TOKEN_VAR", "export it")
