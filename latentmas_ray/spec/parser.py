"""The command line's argparse parser: exact flag names, a suggestion for a typo, help that
shows one spelling per flag.

    p = Parser(prog="latentmas-ray run")
    p.add("--max_samples", type=int)      # accepts --max_samples and --max-samples
    p.parse_args(["--max_sample", "5"])   # error: unrecognized arguments: --max_sample 5
                                          #        (did you mean --max_samples?)

- No prefix matching (allow_abbrev=False): argparse would otherwise take `--max_sample` as
  `--max_samples`, and a prefix shared by two flags fails with an error naming neither intent.
- An unknown flag is refused by the parser that owns the flags (the subcommand's, so the usage
  printed is `latentmas-ray run`'s, not the top level's) with the closest known flag.
- Every flag is accepted as `--some_flag` and `--some-flag`; the help shows the first only.
"""

from __future__ import annotations

import argparse
import difflib


class OneSpellingFormatter(argparse.HelpFormatter):
    """Help lines name a flag once (`--max_samples N`), not once per accepted spelling."""

    def __init__(self, prog, indent_increment=2, max_help_position=30, width=None):
        super().__init__(prog, indent_increment, max_help_position, width)

    def _format_action_invocation(self, action):
        if not action.option_strings:
            return super()._format_action_invocation(action)
        seen, names = set(), []
        for s in action.option_strings:          # -h, --help; --max_samples (not --max-samples)
            key = s.lstrip("-").replace("-", "_")
            if key not in seen:
                seen.add(key)
                names.append(s)
        if action.nargs == 0:
            return ", ".join(names)
        metavar = self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join(f"{n} {metavar}" for n in names)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", OneSpellingFormatter)
        super().__init__(*args, **kwargs)

    def add(self, flag: str, *, group=None, **kw):
        """Add `--some_flag` and its twin `--some-flag` (to `group` when given)."""
        names = [flag]
        twin = flag.replace("_", "-") if "_" in flag else flag.replace("-", "_")
        if twin != flag and twin.startswith("--"):
            names.append(twin)
        kw.setdefault("dest", flag.lstrip("-").replace("-", "_"))
        return (group or self).add_argument(*names, **kw)

    def parse_known_args(self, args=None, namespace=None):
        """A parser without subcommands refuses what it does not know itself, so the usage and
        the suggestion come from the parser that owns the flags (argparse would hand the
        leftovers up to the top-level parser, which knows none of the subcommand's flags)."""
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self.suggestion(extras)}")
        return namespace, extras

    def suggestion(self, extras: list[str]) -> str:
        """' (did you mean --max_samples?)' for the first unknown flag that is close to one."""
        primary = {}     # every accepted spelling -> the spelling the help shows
        for action in self._actions:
            for s in action.option_strings:
                primary[s] = action.option_strings[0]
        for word in extras:
            if not word.startswith("--"):
                continue
            word = word.split("=", 1)[0]
            close = difflib.get_close_matches(word, list(primary), n=1, cutoff=0.6)
            if close:
                return f" (did you mean {primary[close[0]]}?)"
        return ""
