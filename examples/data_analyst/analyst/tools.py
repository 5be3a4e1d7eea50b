"""The analyst's tools. File tools are confined to the workspace; run_python has time and memory limits.

run_python is a resource-limited subprocess started in the workspace, not a security boundary:
run the agent in a container when it handles untrusted data.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_READ = 16_000
MAX_TOOL_OUTPUT = 8_000


class ToolError(Exception):
    """A tool call the agent got wrong; the message goes back to the model."""


@dataclass
class Toolbox:
    workspace: Path
    skills_dir: Path
    python_timeout_s: float = 30.0
    python_memory_mb: int = 1024

    def _inside(self, path: str) -> Path:
        p = (self.workspace / path).resolve()
        if not p.is_relative_to(self.workspace.resolve()):
            raise ToolError(f"path {path!r} is outside the workspace")
        return p

    def list_files(self) -> str:
        out = []
        for p in sorted(self.workspace.rglob("*")):
            if p.is_file():
                out.append(f"{p.relative_to(self.workspace).as_posix()} ({p.stat().st_size} bytes)")
        return "\n".join(out) or "(the workspace is empty)"

    def read_file(self, path: str, max_bytes: int = MAX_READ) -> str:
        p = self._inside(path)
        if not p.is_file():
            raise ToolError(f"no such file: {path}")
        with open(p, "rb") as f:
            data = f.read(min(max_bytes, MAX_READ) + 1)
        text = data[: min(max_bytes, MAX_READ)].decode("utf-8", errors="replace")
        if len(data) > min(max_bytes, MAX_READ):
            text += f"\n…[truncated; the file has {p.stat().st_size} bytes]"
        return text if text else "(the file is empty)"

    def write_file(self, path: str, content: str) -> str:
        p = self._inside(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content, encoding="utf-8")
        return f"wrote {len(content.encode())} bytes to {path}"

    def run_python(self, code: str) -> str:
        limit = self.python_memory_mb * 1024 * 1024

        def limits() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            cpu = int(self.python_timeout_s) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))

        env = {"PATH": os.environ.get("PATH", "/usr/bin"), "PYTHONIOENCODING": "utf-8", "LANG": "C.UTF-8"}
        try:
            res = subprocess.run([sys.executable, "-I", "-c", code], cwd=self.workspace, env=env,
                                 capture_output=True, text=True, timeout=self.python_timeout_s,
                                 preexec_fn=limits, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise ToolError(f"the code ran longer than {self.python_timeout_s:g}s and was stopped") from None
        out = (res.stdout + (("\n[stderr]\n" + res.stderr) if res.stderr else "")).strip()
        if len(out) > MAX_TOOL_OUTPUT:
            out = out[:MAX_TOOL_OUTPUT] + "\n…[output truncated]"
        if res.returncode != 0:
            raise ToolError(f"exit code {res.returncode}\n{out}")
        return out or "(no output)"

    def available_skills(self) -> dict[str, str]:
        skills = {}
        for f in sorted(self.skills_dir.glob("*/SKILL.md")):
            desc = next((line.split(":", 1)[1].strip() for line in f.read_text().splitlines()
                         if line.startswith("description:")), "")
            skills[f.parent.name] = desc
        return skills

    def load_skill(self, name: str) -> str:
        f = self.skills_dir / name / "SKILL.md"
        if not f.is_file() or not f.resolve().is_relative_to(self.skills_dir.resolve()):
            raise ToolError(f"no skill {name!r}; available: {', '.join(self.available_skills())}")
        return f.read_text(encoding="utf-8")

    def call(self, name: str, arguments: dict[str, Any]) -> str:
        fn = TOOLS.get(name)
        if fn is None:
            raise ToolError(f"unknown tool {name!r}; tools: {', '.join(TOOLS)}")
        try:
            return fn(self, **arguments)
        except TypeError as exc:
            raise ToolError(f"bad arguments for {name}: {exc}") from None


TOOLS = {
    "list_files": Toolbox.list_files,
    "read_file": Toolbox.read_file,
    "write_file": Toolbox.write_file,
    "run_python": Toolbox.run_python,
    "load_skill": Toolbox.load_skill,
}


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


TOOL_DEFINITIONS = [
    _fn("list_files", "List the files in the workspace with their sizes.", {}, []),
    _fn("read_file", "Read a text file from the workspace (the first max_bytes bytes).",
        {"path": {"type": "string"}, "max_bytes": {"type": "integer"}}, ["path"]),
    _fn("write_file", "Write a text file in the workspace.",
        {"path": {"type": "string"}, "content": {"type": "string"}}, ["path", "content"]),
    _fn("run_python", "Run a Python 3 script in the workspace (standard library only) and return its output.",
        {"code": {"type": "string"}}, ["code"]),
    _fn("load_skill", "Load a skill's instructions by name.", {"name": {"type": "string"}}, ["name"]),
]


def parse_arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ToolError(f"tool arguments are not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ToolError("tool arguments must be a JSON object")
    return value
