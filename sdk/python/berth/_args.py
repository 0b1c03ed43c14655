"""Checks of user-given arguments, each failing with one line that says what to do."""

import difflib
from typing import Any, Dict, Iterable, List

from .errors import InvalidArgument


def refuse_unknown(owner: str, unknown: Dict[str, Any], known: Iterable[str]) -> None:
    if not unknown:
        return
    name = sorted(unknown)[0]
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    hint = "; did you mean %r?" % close[0] if close else "; see help(%s)" % owner
    raise InvalidArgument("%s() has no parameter %r%s" % (owner, name, hint))


def str_list(value: Any, what: str) -> List[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument("%s must be a list of strings, not %r" % (what, value))
    return list(value)


def str_dict(value: Any, what: str) -> Dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgument("%s must be a dict of strings, not %r" % (what, value))
    return dict(value)
