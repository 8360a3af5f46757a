"""The current git commit and branch, read from .git without running git."""

from __future__ import annotations

from pathlib import Path


def git_head(start: Path) -> tuple[str | None, str | None]:
    """(commit, branch) of the repository holding ``start``; (None, None) outside one."""
    for directory in (start, *start.parents):
        git = directory / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = git.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                git = (directory / text.partition(":")[2].strip()).resolve()
        if git.is_dir():
            return _read_head(git)
    return None, None


def _read_head(git: Path) -> tuple[str | None, str | None]:
    try:
        head = (git / "HEAD").read_text().strip()
    except OSError:
        return None, None
    if not head.startswith("ref:"):
        return head or None, None
    ref = head.partition(":")[2].strip()
    branch = ref.removeprefix("refs/heads/")
    for gitdir in (git, _common_dir(git)):
        ref_file = gitdir / ref
        if ref_file.is_file():
            return ref_file.read_text().strip() or None, branch
        packed = gitdir / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha, branch
    return None, branch  # a branch with no commits yet


def _common_dir(git: Path) -> Path:
    common = git / "commondir"
    if common.is_file():
        return (git / common.read_text().strip()).resolve()
    return git
