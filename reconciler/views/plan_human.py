"""The plan for people, the way Terraform prints one: a legend, one block per change with its
reasons and attribute diff, warnings, notes, the summary and the cost line.

Output goes through a `rich.Console` the caller builds, so colour follows the console (on a
terminal only, never with `Console(no_color=True)`). Everything printed is built as `Text`,
never as markup, so brackets in values cannot restyle the output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.text import Text

from reconciler.foreign_objects import ALLOW_FLAG, foreign_summary
from reconciler.model import Action, Change, ForeignObject, Orphan, Plan
from reconciler.public_keys import display_public_key
from reconciler.views.formatting import format_hourly
from reconciler.views.masking import (
    KNOWN_AFTER_APPLY,
    SENSITIVE_TEXT,
    Path,
    is_sensitive,
    shown_after,
    split_path,
)
from reconciler.views.outputs import output_change_lines
from reconciler.views.plan_summary import (
    NO_CHANGES,
    cost_line,
    display_address,
    import_command,
    known_later,
    ordered_changes,
    summary_line,
)

_STYLE = {
    "+": "green",
    "-": "red",
    "~": "yellow",
    "-/+": "red",
    "+/-": "green",
}


def _fmt_scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _fmt_key(key: str, nested: bool) -> str:
    return json.dumps(key, ensure_ascii=False) if nested else key


class _Missing:
    """Marks a key absent from one side of a diff (None is a real value)."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class _Block:
    """Builds the attribute lines of one change block, Terraform style.

    A line is: indent, symbol, padded label, ` = `, value, and an optional
    `# forces replacement` comment. Containers are always expanded, so a sensitive value
    nested anywhere is masked on its own line and never printed inside a collapsed one.
    """

    def __init__(self, change: Change) -> None:
        self.sensitive = frozenset(split_path(p) for p in change.sensitive)
        self.replace = frozenset(split_path(p) for p in change.replace_paths)
        self.unknown = frozenset(split_path(p) for p in change.unknown)
        self.lines: list[Text] = []

    def _forces(self, path: Path, leaf: bool) -> bool:
        if path in self.replace:
            return True
        return leaf and any(r[: len(path)] == path for r in self.replace)

    def line(
        self,
        indent: int,
        symbol: str,
        label: str | None,
        width: int,
        value: Text | str,
        *,
        forces: bool = False,
        suffix: str = "",
    ) -> None:
        line = Text(" " * indent)
        line.append(symbol, style=_STYLE.get(symbol, ""))
        line.append(" ")
        if label is not None:
            line.append(label.ljust(width))
            line.append(" = ")
        line.append(value if isinstance(value, Text) else Text(value))
        if suffix:
            line.append(suffix)
        if forces:
            line.append(" # forces replacement", style="red")
        self.lines.append(line)

    def hidden_note(self, indent: int, hidden: int, noun: str) -> None:
        if hidden:
            plural = "" if hidden == 1 else "s"
            note = f"# ({hidden} unchanged {noun}{plural} hidden)"
            self.lines.append(Text(" " * indent + note, style="dim"))

    def _value_text(self, value: Any, path: Path) -> Text:
        if is_sensitive(path, self.sensitive):
            return Text(SENSITIVE_TEXT, style="dim")
        if path in self.unknown:
            return Text(KNOWN_AFTER_APPLY)
        return Text(_fmt_scalar(value))

    def full(self, indent: int, symbol: str, label: str | None, width: int, value: Any, path: Path) -> None:
        """Every element of `value` with one symbol (the whole value is added or removed)."""
        sep = "," if label is None else ""
        masked = is_sensitive(path, self.sensitive) or path in self.unknown
        if masked or not isinstance(value, dict | list) or not value:
            self.line(
                indent,
                symbol,
                label,
                width,
                self._value_text(value, path),
                forces=self._forces(path, leaf=True),
                suffix=sep,
            )
            return
        opener, closer = ("{", "}") if isinstance(value, dict) else ("[", "]")
        self.line(indent, symbol, label, width, opener, forces=self._forces(path, leaf=False))
        if isinstance(value, dict):
            keys = [_fmt_key(str(k), nested=True) for k in value]
            inner = max(len(k) for k in keys)
            for key, shown in zip(value, keys, strict=True):
                self.full(indent + 4, symbol, shown, inner, value[key], (*path, str(key)))
        else:
            for i, item in enumerate(value):
                self.full(indent + 4, symbol, None, 0, item, (*path, str(i)))
        self.lines.append(Text(" " * (indent + 2) + closer + sep))

    def changed_keys(self, before: dict[str, Any], after: dict[str, Any], path: Path) -> list[str]:
        """Keys whose values differ, plus equal ones named as forcing replacement."""
        keys = set(before) | set(after)
        return sorted(
            (
                k
                for k in keys
                if before.get(k, _MISSING) != after.get(k, _MISSING) or (*path, str(k)) in self.replace
            ),
            key=str,
        )

    def diff_mapping(
        self,
        indent: int,
        before: dict[str, Any],
        after: dict[str, Any],
        path: Path,
        *,
        nested: bool,
        min_width: int = 0,
    ) -> int:
        """Lines for keys that differ; returns how many equal keys were left out."""
        shown = self.changed_keys(before, after, path)
        width = max([min_width, *(len(_fmt_key(str(k), nested)) for k in shown)])
        for key in shown:
            self.diff_value(
                indent,
                _fmt_key(str(key), nested),
                width,
                before.get(key, _MISSING),
                after.get(key, _MISSING),
                (*path, str(key)),
            )
        return len(set(before) | set(after)) - len(shown)

    def diff_value(self, indent: int, label: str, width: int, old: Any, new: Any, path: Path) -> None:
        if old is _MISSING:
            self.full(indent, "+", label, width, new, path)
            return
        if new is _MISSING:
            self.full(indent, "-", label, width, old, path)
            return
        if old == new:
            self.full(indent, " ", label, width, new, path)
            return
        if is_sensitive(path, self.sensitive):
            masked = Text(SENSITIVE_TEXT, style="dim")
            self.line(indent, "~", label, width, masked, forces=self._forces(path, leaf=True))
            return
        if path in self.unknown and not isinstance(old, dict | list):
            shown = Text(f"{_fmt_scalar(old)} -> {KNOWN_AFTER_APPLY}")
            self.line(indent, "~", label, width, shown, forces=self._forces(path, leaf=True))
            return
        if isinstance(old, dict) and isinstance(new, dict):
            self.line(indent, "~", label, width, "{", forces=self._forces(path, leaf=False))
            hidden = self.diff_mapping(indent + 4, old, new, path, nested=True)
            self.hidden_note(indent + 6, hidden, "element")
            self.lines.append(Text(" " * (indent + 2) + "}"))
            return
        both_lists = isinstance(old, list) and isinstance(new, list)
        removed = [(i, v) for i, v in enumerate(old) if v not in new] if both_lists else []
        added = [(i, v) for i, v in enumerate(new) if v not in old] if both_lists else []
        if removed or added:
            self.line(indent, "~", label, width, "[", forces=self._forces(path, leaf=False))
            for i, item in removed:
                self.full(indent + 4, "-", None, 0, item, (*path, str(i)))
            for i, item in added:
                self.full(indent + 4, "+", None, 0, item, (*path, str(i)))
            self.hidden_note(indent + 6, len(new) - len(added), "element")
            self.lines.append(Text(" " * (indent + 2) + "]"))
            return
        if isinstance(old, dict | list) or isinstance(new, dict | list):
            # A change of type or of order only: show both values whole.
            self.full(indent, "-", label, width, old, path)
            self.full(indent, "+", label, width, new, path)
            return
        self.line(
            indent,
            "~",
            label,
            width,
            Text(f"{_fmt_scalar(old)} -> ").append_text(self._value_text(new, path)),
            forces=self._forces(path, leaf=True),
        )

    def known_after_apply(self, indent: int, symbol: str, names: Sequence[str], width: int) -> None:
        for name in names:
            self.line(indent, symbol, name, width, KNOWN_AFTER_APPLY)


_HEADLINE = {
    Action.CREATE: "will be created",
    Action.DELETE: "will be destroyed",
    Action.REPLACE: "must be replaced",
    Action.UPDATE: "will be updated in-place",
}


def _symbol(change: Change) -> str:
    if change.action is Action.REPLACE:
        return "+/-" if change.create_before_destroy else "-/+"
    return {Action.CREATE: "+", Action.DELETE: "-", Action.UPDATE: "~"}[change.action]


def _shown_keys(attributes: dict[str, Any]) -> dict[str, Any]:
    """A public key as its type, fingerprint and comment: a key line may be kilobytes long."""
    key = attributes.get("public_key")
    if not isinstance(key, str):
        return attributes
    return {**attributes, "public_key": display_public_key(key)}


def _change_block(change: Change) -> list[Text]:
    symbol = _symbol(change)
    headline = _HEADLINE[change.action]
    if change.action is Action.REPLACE and change.create_before_destroy:
        headline += " (create before destroy)"
    if change.destroys_data:
        headline += " (destroys data)"
    lines = [Text(f"  # {display_address(change)} {headline}", style="bold")]
    lines += [Text(f"  # ({reason})") for reason in change.reasons]
    head = Text(symbol.rjust(3), style=_STYLE[symbol])
    head.append(f" {change.address} ({change.provider}) {{")
    lines.append(head)

    block = _Block(change)
    before = _shown_keys(change.before or {})
    after = _shown_keys(shown_after(change) or {})
    later = known_later(change)
    if change.action is Action.CREATE:
        width = max((len(k) for k in [*after, *later]), default=0)
        for key, value in after.items():
            block.full(6, "+", key, width, value, (key,))
        block.known_after_apply(6, "+", later, width)
    elif change.action is Action.DELETE:
        keys = (["id"] if change.id else []) + list(before)
        width = max((len(k) for k in keys), default=0)
        if change.id:
            block.full(6, "-", "id", width, change.id, ("id",))
        for key, value in before.items():
            block.full(6, "-", key, width, value, (key,))
    else:
        width = max(len(k) for k in ["id", *block.changed_keys(before, after, ()), *later])
        if change.id and change.action is Action.REPLACE:
            new_id = Text(f"{_fmt_scalar(change.id)} -> (known after apply)")
            block.line(6, "~", "id", width, new_id)
        elif change.id:
            block.line(6, " ", "id", width, Text(_fmt_scalar(change.id)))
        hidden = block.diff_mapping(6, before, after, (), nested=False, min_width=width)
        block.known_after_apply(6, "~", [k for k in later if k != "id"], width)
        block.hidden_note(8, hidden, "attribute")
    lines += block.lines
    if change.hourly_before or change.hourly_after:
        lines.append(
            Text(
                f"      # {format_hourly(change.hourly_before)} -> {format_hourly(change.hourly_after)}",
                style="dim",
            )
        )
    lines.append(Text("    }"))
    return lines


def _symbols_legend(changes: Sequence[Change]) -> list[Text]:
    used = {_symbol(c) for c in changes}
    legend = [
        ("+", "create"),
        ("~", "update in-place"),
        ("-", "destroy"),
        ("-/+", "destroy and then create replacement"),
        ("+/-", "create replacement and then destroy"),
    ]
    lines = [Text("Resource actions are indicated with the following symbols:")]
    for symbol, meaning in legend:
        if symbol in used:
            line = Text(symbol.rjust(3), style=_STYLE[symbol])
            line.append(f" {meaning}")
            lines.append(line)
    return lines


def _orphan_lines(orphans: Sequence[Orphan]) -> list[Text]:
    total = sum(o.hourly_price or 0.0 for o in orphans)
    noun = "resource carries" if len(orphans) == 1 else "resources carry"
    lines = [
        Text(
            f"Warning: {len(orphans)} live {noun} this state's marker but state does not track "
            f"{'it' if len(orphans) == 1 else 'them'} ({format_hourly(total)})",
            style="bold yellow",
        ),
        Text(
            "  Reconciler will not change or delete these, but they run and may cost money. "
            "Adopt each with the command shown, or delete it at the provider."
        ),
    ]
    for orphan in sorted(orphans, key=lambda o: (o.kind.value, o.name, o.id)):
        price = format_hourly(orphan.hourly_price) if orphan.hourly_price is not None else "price unknown"
        lines.append(
            Text(f"  - {orphan.kind.singular} {orphan.name!r} ({orphan.provider}, id={orphan.id}): {price}")
        )
        command = Text(f"      {import_command(orphan)}", style="cyan")
        if orphan.address is None:
            command.append("  # use the address you give it in your configuration", style="dim")
        lines.append(command)
    return lines


def _foreign_lines(foreign: Sequence[ForeignObject]) -> list[Text]:
    lines = [
        Text(f"Warning: {foreign_summary(tuple(foreign))}.", style="bold red"),
        Text(
            "  Applying would run them twice. Is this configuration's state somewhere else (another "
            "-f path, a renamed folder or file, a different --state or stack)? Point reconciler at it; "
            f"apply refuses to create these unless {ALLOW_FLAG} is given."
        ),
    ]
    for item in foreign:
        price = format_hourly(item.hourly_price) if item.hourly_price is not None else "price unknown"
        lines.append(
            Text(
                f"  - {item.address}: {item.provider} {item.kind.singular} {item.name!r} (id={item.id}) "
                f"of state lineage {item.lineage}: {price}"
            )
        )
    return lines


def render_plan(plan: Plan, console: Console) -> None:
    """Print a plan the way Terraform does, so a reader knows what apply will do and cost."""

    def out(line: Text | str = "") -> None:
        console.print(line if isinstance(line, Text) else Text(line), soft_wrap=True)

    changes = ordered_changes(plan)
    if changes:
        for line in _symbols_legend(changes):
            out(line)
        out()
        out("Reconciler will perform the following actions:")
        for change in changes:
            out()
            for line in _change_block(change):
                out(line)
        out()
    elif not any(o.action is not Action.NOOP for o in plan.outputs):
        out(Text(NO_CHANGES, style="bold green"))
        out()
    output_lines = output_change_lines(plan.outputs)
    if output_lines:
        for text in output_lines:
            out(text)
        out()
        if not changes:
            out(
                "You can apply this plan to save these new output values, without changing any real infrastructure."
            )
            out()
    if plan.foreign:
        for line in _foreign_lines(plan.foreign):
            out(line)
        out()
    if plan.orphans:
        for line in _orphan_lines(plan.orphans):
            out(line)
        out()
    if plan.notes:
        out(Text("Note:", style="bold"))
        for note in plan.notes:
            out(f"  - {note}")
        out()
    if changes:
        out(Text(summary_line(plan), style="bold"))
    out(cost_line(plan))
