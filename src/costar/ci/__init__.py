"""``costar ci init``: CI workflows that run the suite on every change and nightly against the real stack.

GitHub Actions: ``.github/workflows/costar.yml`` (pull requests, and pushes to the baseline branch)
and ``.github/workflows/costar-nightly.yml`` (a schedule). GitLab CI: ``.gitlab/costar.gitlab-ci.yml``
(merge requests, pushes to the default branch, pipeline schedules), included from
``.gitlab-ci.yml`` (written when there is none). What each job does is in the files' header
comments and in docs/CI.md.

Where the baseline lives (``store``):

* ``artifact`` (default): each push to the baseline branch keeps its store as a CI artifact; a pull
  request downloads the target branch's latest one; the nightly job carries its store (runs and MCP
  snapshots) from one night to the next the same way. Nothing to set up; artifacts expire
  (``retention_days``).
* ``shared``: every job reads and writes one store named by a CI secret (``COSTAR_STORE`` by
  default): a path on a shared volume, or a database URL for a store that supports one.

The scripts in ``run:`` steps read only environment variables (never ``${{ }}`` expressions inline),
so a branch name cannot inject shell code, and the tests can run the very same scripts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from costar.errors import ConfigError

__all__ = ["CiOptions", "FailOn", "Provider", "StoreMode", "render", "write"]

Provider = Literal["github", "gitlab"]
StoreMode = Literal["artifact", "shared"]
FailOn = Literal["regression", "gates"]

DEFAULT_INSTALL = ("python -m pip install --upgrade pip", "python -m pip install costar",
                   "if [ -f requirements.txt ]; then python -m pip install -r requirements.txt; fi")
_CRON = re.compile(r"^\s*(\S+\s+){4}\S+\s*$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-/]+$")
_SECRET = re.compile(r"^[A-Z_][A-Z0-9_]*$")


@dataclass
class CiOptions:
    """What ``costar ci init`` writes."""

    provider: Provider
    branch: str = "main"
    """The branch whose runs are the baseline of pull requests (GitLab: the default branch)."""
    tags: list[str] = field(default_factory=list)
    """Scenario tags a pull request runs (``smoke``); empty: the whole suite. Nightly runs everything."""
    store: StoreMode = "artifact"
    store_secret: str = "COSTAR_STORE"
    """The CI secret / variable naming the shared store (``store="shared"``)."""
    cron: str = "17 3 * * *"
    python: str = "3.11"
    install: list[str] = field(default_factory=lambda: list(DEFAULT_INSTALL))
    """Shell lines that install coSTAR and the agent's dependencies."""
    rejudge: int | None = None
    """Re-judge regressions this many times per trace before reporting (``costar compare --rejudge``)."""
    fail_on: FailOn = "regression"
    """``regression``: fail on a significant regression against the baseline; ``gates``: also when any
    gating verdict of the run fails."""
    timeout_minutes: int = 60
    retention_days: int = 30

    def validate(self) -> None:
        if self.provider not in ("github", "gitlab"):
            raise ConfigError(f"unknown CI provider {self.provider!r}; use github or gitlab")
        if not _NAME.match(self.branch):
            raise ConfigError(f"--branch {self.branch!r} is not a branch name")
        for tag in self.tags:
            if not _NAME.match(tag):
                raise ConfigError(f"--tag {tag!r}: tags are letters, digits and . _ - /")
        if not _CRON.match(self.cron):
            raise ConfigError(f"--schedule {self.cron!r} is not a cron expression of five fields, e.g. '17 3 * * *'")
        if not _SECRET.match(self.store_secret):
            raise ConfigError(f"--store-secret {self.store_secret!r}: use an upper-case variable name")
        if self.rejudge is not None and self.rejudge < 2:
            raise ConfigError("--rejudge needs at least 2 samples per trace")
        if not re.match(r"^3\.\d+$", self.python):
            raise ConfigError(f"--python {self.python!r}: give a Python version such as 3.11")
        if not self.install or any("\n" in line for line in self.install):
            raise ConfigError("--install takes one shell line per option (at least one)")


def _template(name: str) -> str:
    return resources.files("costar.ci").joinpath("templates", name).read_text(encoding="utf-8")


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    left = re.findall(r"@@[A-Z_]+@@", text)
    assert not left, f"unfilled template keys: {left}"
    return text


def _values(o: CiOptions) -> dict[str, str]:
    from costar import __version__

    shared = o.store == "shared"
    selection = "".join(f" --tag {t}" for t in o.tags)
    return {
        "VERSION": __version__,
        "BRANCH": o.branch,
        "SELECTION": selection,
        "SELECTION_TEXT": ("scenarios tagged " + ", ".join(o.tags)) if o.tags else "the whole suite",
        "STORE_TEXT": (f"a shared store named by the secret {o.store_secret}" if shared else
                       "the .costar store folder, kept between runs as a CI artifact"),
        "STORE_ENV": (f"${{{{ secrets.{o.store_secret} }}}}" if o.provider == "github" else f"${o.store_secret}")
        if shared else ".costar",
        "PYTHON": o.python,
        "CRON": o.cron,
        "REJUDGE": f" --rejudge {o.rejudge}" if o.rejudge else "",
        "FAIL_ON": o.fail_on,
        "TIMEOUT": str(o.timeout_minutes),
        "RETENTION": str(o.retention_days),
    }


def _indent(lines: list[str], spaces: int, prefix: str = "") -> str:
    return "\n".join(" " * spaces + prefix + line for line in lines)


def _github(o: CiOptions) -> dict[str, str]:
    values = _values(o)
    artifact = o.store == "artifact"
    values.update({
        "INSTALL": _indent(o.install, 10),
        "BASELINE_DOWNLOAD": _template("github-baseline-download.yaml").rstrip("\n") if artifact else "",
        "BASELINE_UPLOAD": _fill(_template("github-baseline-upload.yaml"), values).rstrip("\n") if artifact else "",
        "NIGHTLY_DOWNLOAD": _template("github-nightly-download.yaml").rstrip("\n") if artifact else "",
        "NIGHTLY_UPLOAD": _fill(_template("github-nightly-upload.yaml"), values).rstrip("\n") if artifact else "",
    })
    return {".github/workflows/costar.yml": _tidy(_fill(_template("github-pr.yaml"), values)),
            ".github/workflows/costar-nightly.yml": _tidy(_fill(_template("github-nightly.yaml"), values))}


def _gitlab(o: CiOptions) -> dict[str, str]:
    values = _values(o)
    artifact = o.store == "artifact"

    def store_artifact(extra: list[str]) -> str:
        return ("  artifacts:\n    paths:\n" + _indent([".costar/", *extra], 6, "- ") + "\n") if artifact else ""

    values.update({
        "INSTALL": _indent(o.install, 4, "- "),
        "GITLAB_BASELINE_DOWNLOAD": _template("gitlab-baseline-download.yaml").rstrip("\n") if artifact else "",
        "GITLAB_NIGHTLY_DOWNLOAD": _template("gitlab-nightly-download.yaml").rstrip("\n") if artifact else "",
        "GITLAB_BASELINE_ARTIFACT": store_artifact(["costar-report.html", "costar-junit.xml"]),
        "GITLAB_NIGHTLY_ARTIFACT": store_artifact(["costar-report.html", "costar-junit.xml", "costar-mcp.md",
                                                   "costar-nightly.md"]),
    })
    text = _fill(_template("gitlab.yaml"), values)
    if artifact:
        # The nightly job's artifacts list gains the store: drop the list written above it.
        text = text.replace("""  artifacts:
    paths:
      - costar-report.html
      - costar-junit.xml
      - costar-mcp.md
      - costar-nightly.md
  artifacts:""", "  artifacts:")
    return {".gitlab/costar.gitlab-ci.yml": _tidy(text)}


def _tidy(text: str) -> str:
    """No blank-line runs where an optional block was left out; one newline at the end."""
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


GITLAB_ROOT = """# coSTAR's jobs (written by `costar ci init gitlab`); add your own jobs below.
include:
  - local: .gitlab/costar.gitlab-ci.yml
"""


def render(options: CiOptions) -> dict[str, str]:
    """Relative path -> file text, for the provider's workflows."""
    options.validate()
    return _github(options) if options.provider == "github" else _gitlab(options)


def write(root: Path, options: CiOptions, *, force: bool = False) -> list[Path]:
    """Write the workflows under ``root``; an existing file is kept unless ``force``. Returns what was written
    (for GitLab, ``.gitlab-ci.yml`` too when the project has none; an existing one is never changed)."""
    files = render(options)
    existing = [p for p in files if (root / p).exists()]
    if existing and not force:
        raise ConfigError(f"{existing[0]} exists; pass --force to overwrite it (or remove it)")
    written = []
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if options.provider == "gitlab" and not (root / ".gitlab-ci.yml").exists():
        (root / ".gitlab-ci.yml").write_text(GITLAB_ROOT, encoding="utf-8")
        written.append(root / ".gitlab-ci.yml")
    return written
