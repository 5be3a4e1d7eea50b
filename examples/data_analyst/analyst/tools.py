"""The analyst's tools. File tools are confined to the workspace; run_python has time and memory limits.

Two levels: raw tools (list_files, read_file, write_file, run_python) that can do anything, and
high-level CSV tools (profile_csv, drop_duplicates, fill_missing, convert_numeric, count_by) that
do one common job in one call. A strong model may use either; a small one needs the second kind.

run_python runs code the model wrote, and the model reads the task and the files, which may come from
anyone: so it runs in coSTAR's sandbox (bubblewrap: no network, a read-only system, nothing but the
workspace writable) whenever one is available. Sandbox modes (``--sandbox`` or $ANALYST_SANDBOX):
``auto`` (the default: sandboxed where bubblewrap works, else with the resource limits only, said once
on stderr), ``on`` (refuse to run code without a sandbox) and ``off`` (limits only). The default is on
because analysing CSV files never needs the network or anything outside the workspace, so isolation
costs nothing; ``auto`` rather than ``on`` because the agent is the user's own and should still run
on machines without bubblewrap (macOS).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from analyst import csv_tools
from analyst.errors import SkillRequired, ToolError
from analyst.schemas import tool_definitions

from costar.sandbox import Mount, bwrap_argv, unavailable_reason

__all__ = ["ONE_CALL_TOOLS", "TOOLS", "SkillRequired", "ToolError", "Toolbox", "parse_arguments"]

# The one-call tools: each does a whole common task and usually finishes it.
ONE_CALL_TOOLS = frozenset({"profile_csv", "drop_duplicates", "fill_missing", "convert_numeric", "count_by"})
MAX_READ = 16_000
MAX_TOOL_OUTPUT = 8_000


@dataclass
class Toolbox:
    workspace: Path
    skills_dir: Path
    python_timeout_s: float = 30.0
    python_memory_mb: int = 1024
    sandbox: Literal["auto", "on", "off"] = "auto"
    loaded_skills: set[str] = field(default_factory=set)
    # The files the task came with: tools read them but never overwrite them.
    inputs: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.inputs = frozenset(self.files())

    def _inside(self, path: str) -> Path:
        p = (self.workspace / path).resolve()
        if not p.is_relative_to(self.workspace.resolve()):
            raise ToolError(f"path {path} is outside the workspace")
        return p

    def list_files(self) -> str:
        out = [f"{f} ({(self.workspace / f).stat().st_size} bytes)" for f in self.files()]
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

    def _writable(self, path: str) -> Path:
        p = self._inside(path)
        if p.exists() and p.relative_to(self.workspace.resolve()).as_posix() in self.inputs:
            raise ToolError(f"{path} is an input file and is kept as it is: write to a new file, "
                            f"such as {Path(path).stem}_clean{Path(path).suffix}")
        return p

    def write_file(self, path: str, content: str) -> str:
        p = self._writable(path)
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
        argv = [sys.executable, "-I", "-c", code]
        if self._sandboxed():
            here = str(self.workspace.resolve())
            argv = bwrap_argv(argv, mounts=[Mount(self.workspace.resolve(), here, writable=True)], cwd=here,
                              env={**env, "HOME": here})
        try:
            res = subprocess.run(argv, cwd=self.workspace, env=env,
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

    def _sandboxed(self) -> bool:
        if self.sandbox == "off":
            return False
        reason = unavailable_reason()
        if reason is None:
            return True
        if self.sandbox == "on":
            raise ToolError(f"run_python is off: no sandbox is available ({reason})")
        if not getattr(self, "_warned", False):
            print(f"analyst: run_python runs without a sandbox ({reason})", file=sys.stderr)
            self._warned = True
        return False

    def available_skills(self) -> dict[str, str]:
        return {name: meta.get("description", "") for name, meta in self._skills().items()}

    def load_skill(self, name: str) -> str:
        f = self.skills_dir / name / "SKILL.md"
        if not f.is_file() or not f.resolve().is_relative_to(self.skills_dir.resolve()):
            raise ToolError(f"no skill {name}; available: {', '.join(self.available_skills())}")
        self.loaded_skills.add(name)
        return _split_skill(f.read_text(encoding="utf-8"))[1]

    def _skills(self) -> dict[str, dict[str, str]]:
        return {f.parent.name: _split_skill(f.read_text(encoding="utf-8"))[0]
                for f in sorted(self.skills_dir.glob("*/SKILL.md"))}

    def governing_skills(self, tool: str) -> list[str]:
        """Skills whose front matter lists ``tool`` under ``tools:``."""
        return [name for name, meta in self._skills().items()
                if tool in [t.strip() for t in meta.get("tools", "").strip("[]").split(",")]]

    # -- high-level CSV tools ---------------------------------------------------------------------

    def profile_csv(self, path: str, output: str | None = None) -> str:
        src = self._existing(path)
        return csv_tools.profile(src, path, self._writable(output) if output else None, output or "")

    def drop_duplicates(self, path: str, output: str) -> str:
        return csv_tools.drop_duplicates(self._existing(path), path, self._writable(output), output)

    def fill_missing(self, path: str, column: str, strategy: str, output: str) -> str:
        return csv_tools.fill_missing(self._existing(path), path, column, strategy, self._writable(output), output)

    def convert_numeric(self, path: str, column: str, output: str) -> str:
        return csv_tools.convert_numeric(self._existing(path), path, column, self._writable(output), output)

    def count_by(self, path: str, column: str, output: str) -> str:
        return csv_tools.count_by(self._existing(path), path, column, self._writable(output), output)

    def _existing(self, path: str) -> Path:
        p = self._inside(path)
        if not p.is_file():
            raise ToolError(f"no such file: {path}; files: {', '.join(self.files()[:20]) or 'none'}")
        return p

    # -- dispatch and schemas ---------------------------------------------------------------------

    def files(self, limit: int = 200) -> list[str]:
        out: list[str] = []
        for p in sorted(self.workspace.rglob("*")):
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.workspace).parts):
                out.append(p.relative_to(self.workspace).as_posix())
                if len(out) >= limit:
                    break
        return out

    def definitions(self) -> list[dict[str, Any]]:
        """The tool definitions for the current state of the workspace (see schemas.py)."""
        csvs = [f for f in self.files() if f.endswith(".csv")]
        columns: set[str] = set()
        for f in csvs:
            header = csv_tools.read_header(self.workspace / f)
            columns.update(h.strip() for h in header or [] if h.strip())
        return tool_definitions(files=self.files(), csv_files=csvs, columns=sorted(columns),
                                skills=list(self.available_skills()))

    def call(self, name: str, arguments: dict[str, Any]) -> str:
        fn = TOOLS.get(name)
        if fn is None:
            raise ToolError(f"unknown tool {name}; tools: {', '.join(TOOLS)}")
        skills = self.governing_skills(name)
        if skills and not self.loaded_skills.intersection(skills):
            # Read the manual first: the skill decides how the tool is used (e.g. which statistic
            # fills a column), so the first call comes back with the skill instead of a result.
            raise SkillRequired(name, skills[0], self.load_skill(skills[0]), arguments)
        try:
            return fn(self, **arguments)
        except TypeError as exc:
            raise ToolError(f"bad arguments for {name}: {exc}") from None


def _split_skill(text: str) -> tuple[dict[str, str], str]:
    """SKILL.md's front matter (flat ``key: value`` lines) and its body. The model gets the body
    only: the name and description are already in the system prompt."""
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            meta = {}
            for line in text[3:end].splitlines():
                key, sep, value = line.partition(":")
                if sep:
                    meta[key.strip()] = value.strip()
            return meta, text[end + 4:].lstrip()
    return {}, text


TOOLS = {
    "list_files": Toolbox.list_files,
    "read_file": Toolbox.read_file,
    "write_file": Toolbox.write_file,
    "run_python": Toolbox.run_python,
    "load_skill": Toolbox.load_skill,
    "profile_csv": Toolbox.profile_csv,
    "drop_duplicates": Toolbox.drop_duplicates,
    "fill_missing": Toolbox.fill_missing,
    "convert_numeric": Toolbox.convert_numeric,
    "count_by": Toolbox.count_by,
}


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
