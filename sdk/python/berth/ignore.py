"""`.berthignore` (and `.dockerignore`, read from the root): gitignore syntax (comments, `!` negation, `/` anchors, trailing `/` for
directories, `*`, `?`, `[...]`, `**`); the last matching pattern decides."""

import re
from typing import List, NamedTuple, Pattern


class Rule(NamedTuple):
    regex: Pattern
    negate: bool
    dir_only: bool


def _glob_to_regex(glob: str) -> str:
    out = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("/.*")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = glob[i + 1:end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[%s]" % body)
                i = end
        elif c == "\\" and i + 1 < len(glob):
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def parse(text: str, anchored: bool = False) -> List[Rule]:
    """Rules of an ignore file; `anchored` reads every pattern from the root, as Docker
    reads `.dockerignore` (gitignore, and so `.berthignore`, anchors only patterns with a
    slash)."""
    rules = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        elif line.startswith("\\"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        # A slash at the start or in the middle anchors the pattern at the root.
        from_root = anchored or "/" in line
        line = line.lstrip("/")
        if line.startswith("./"):
            line = line[2:]
        body = _glob_to_regex(line)
        prefix = "" if from_root else "(?:.*/)?"
        rules.append(Rule(re.compile("^%s%s$" % (prefix, body)), negate, dir_only))
    return rules


def ignored(rules: List[Rule], path: str, is_dir: bool) -> bool:
    """Whether `path` (relative, with `/`) is ignored by `rules` alone."""
    verdict = False
    for rule in rules:
        if rule.dir_only and not is_dir:
            continue
        if rule.regex.match(path):
            verdict = not rule.negate
    return verdict
