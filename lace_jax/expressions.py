"""The one expression language of lace_jax: text → tree, and the tree read two ways.

    shape=circle & (background=black | !size=0.2)        precedence ! > & > |, parentheses group

One tokenizer and one recursive-descent parser build a tree of `Atom`, `Not`, `And` and `Or` nodes (`And`/`Or`
only for two or more operands, a parenthesised group is its inner tree). The tree is then interpreted:
* to an energy — `energy.parse` folds it with the world's AND/OR/NOT (`fold`);
* to true/false per sample — `satisfied` reads each atom with any reader (the latent classifiers in sweeps, the
  judge's labels in evaluation and control) and combines them with Boolean logic;
* to a composition of diffusion models — `lace_jax.diffusion_2d` reads trees over bare model names.

Atoms are `name=value` conditions on attributes (`parse`; a value is a class index or name for a discrete
attribute, a number for a continuous one, checked against the attribute) or bare names (`parse_names`). Errors are
`ValueError`s that quote the expression with a caret under the offending column.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

DISCRETE, CONTINUOUS = "discrete", "continuous"


class Atom(NamedTuple):
    """A condition `name=value` (value resolved: class index or float), or a bare name (value None)."""
    name: str
    value: Any = None


class Not(NamedTuple):
    item: Any


class And(NamedTuple):
    items: tuple


class Or(NamedTuple):
    items: tuple


def syntax_error(expr: str, pos: int, msg: str) -> ValueError:
    """A ValueError quoting `expr` with a caret under column `pos` (0-based)."""
    pos = max(0, min(pos, len(expr)))
    return ValueError(f"{msg} at column {pos + 1} of expression {expr!r}:\n  {expr}\n  {' ' * pos}^")


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<op>==|&&|\|\||[=&|!()])
""", re.VERBOSE)
_ALIASES = {"==": "=", "&&": "&", "||": "|"}


class Token(NamedTuple):
    kind: str   # 'num' | 'name' | 'str' | 'op' | 'end'
    text: str
    pos: int


def tokenize(expr: str, *, aliases: bool = True) -> list[Token]:
    """Tokens of `expr` ending with an 'end' token; `aliases`: read `==`, `&&`, `||` as `=`, `&`, `|`."""
    out, i = [], 0
    while i < len(expr):
        m = _TOKEN.match(expr, i)
        if m is None:
            raise syntax_error(expr, i, f"unexpected character {expr[i]!r}")
        kind = m.lastgroup
        if kind != "ws":
            text = m.group()
            out.append(Token(kind, _ALIASES.get(text, text) if aliases else text, i))
        i = m.end()
    out.append(Token("end", "", len(expr)))
    return out


def _what(t: Token) -> str:
    return "end of expression" if t.kind == "end" else repr(t.text)


def _parse(expr: str, toks: list[Token], atom: Callable[[Token, list[Token], int], tuple[Any, int]],
           expect: str = "an attribute condition such as 'name=value'") -> Any:
    """The grammar `or := and ('|' and)*; and := not ('&' not)*; not := '!' not | '(' or ')' | atom`; `atom`
    reads one atom at `toks[pos]` (a name token) and returns (node, next pos); `expect` names an atom in errors."""
    pos = 0

    def is_op(text: str) -> bool:
        return toks[pos].kind == "op" and toks[pos].text == text

    def level(op: str, operand: Callable[[], Any], node: type) -> Any:
        nonlocal pos
        items = [operand()]
        while is_op(op):
            pos += 1
            items.append(operand())
        return items[0] if len(items) == 1 else node(tuple(items))

    def p_or():
        return level("|", p_and, Or)

    def p_and():
        return level("&", p_not, And)

    def p_not():
        nonlocal pos
        if is_op("!"):
            pos += 1
            return Not(p_not())
        t = toks[pos]
        if t.kind == "op" and t.text == "(":
            pos += 1
            v = p_or()
            if not is_op(")"):
                raise syntax_error(expr, toks[pos].pos, f"expected ')' to close the '(' at column {t.pos + 1}, "
                                                        f"found {_what(toks[pos])}")
            pos += 1
            return v
        if t.kind == "name":
            node, pos = atom(t, toks, pos)
            return node
        raise syntax_error(expr, t.pos, f"expected {expect}, '(' or '!', found {_what(t)}")

    if toks[0].kind == "end":
        raise syntax_error(expr, 0, "empty expression")
    tree = p_or()
    t = toks[pos]
    if t.kind != "end":
        raise syntax_error(expr, t.pos, f"unexpected {t.text!r}" + (" (no matching '(')" if t.text == ")" else ""))
    return tree


def looks_like_lace(expr: str) -> bool:
    """Whether `expr` is LACE's digit syntax (`0+1*2`), which indexes a list of energies instead."""
    return bool(re.fullmatch(r"[\d\s+\-*()]*\d[\d\s+\-*()]*", expr))


def parse(expr: str, attributes: Mapping[str, Any]) -> Any:
    """`name=value` conditions over `attributes` (name → an object with `kind`, `num_classes`, `classes`,
    `value_range`, such as `energy.Attribute`) → a tree whose atoms carry resolved values (class index or float).
    Unknown names, unknown classes and out-of-range values are errors at their column."""
    if not isinstance(expr, str):
        raise TypeError(f"parse: expr must be a string, got {type(expr).__name__}")
    if looks_like_lace(expr):
        raise syntax_error(expr, 0, "this is LACE's digit syntax, which indexes a list of energies: call "
                                    "parse_lace(expr, energies) or parse(expr, [e0, e1, ...])")

    def atom(name_tok: Token, toks: list[Token], pos: int):
        name = name_tok.text
        if name not in attributes:
            known = ", ".join(sorted(attributes)) or "none"
            raise syntax_error(expr, name_tok.pos, f"unknown attribute {name!r} (known attributes: {known})")
        eq = toks[pos + 1]
        if not (eq.kind == "op" and eq.text == "="):
            raise syntax_error(expr, eq.pos, f"expected '=', found {_what(eq)}")
        v = toks[pos + 2]
        if v.kind not in ("num", "name", "str"):
            raise syntax_error(expr, v.pos, f"expected a value for {name!r}, found {_what(v)}")
        return Atom(name, _value(expr, attributes[name], name, v)), pos + 3

    return _parse(expr, tokenize(expr), atom)


def _value(expr: str, attr: Any, name: str, v: Token):
    if attr.kind == DISCRETE:
        hint = f"0..{attr.num_classes - 1}" + (f" or one of {list(attr.classes)}" if attr.classes else "")
        if v.kind == "num":
            try:
                k = int(v.text)
            except ValueError:
                raise syntax_error(expr, v.pos, f"discrete attribute {name!r} needs a class index ({hint}), "
                                                f"got {v.text}") from None
            if not 0 <= k < attr.num_classes:
                raise syntax_error(expr, v.pos, f"class index {k} out of range for discrete attribute {name!r} "
                                                f"(valid: {hint})")
            return k
        label = v.text.strip("'\"") if v.kind == "str" else v.text
        if not attr.classes or label not in attr.classes:
            raise syntax_error(expr, v.pos, f"unknown class {label!r} for discrete attribute {name!r} "
                                            f"(valid: {hint})")
        return attr.classes.index(label)
    if v.kind != "num":
        raise syntax_error(expr, v.pos, f"continuous attribute {name!r} needs a number, got {v.text!r}")
    y = float(v.text)
    if not math.isfinite(y):
        raise syntax_error(expr, v.pos, f"value {v.text} for {name!r} is not finite")
    if attr.value_range is not None and not attr.value_range[0] <= y <= attr.value_range[1]:
        raise syntax_error(expr, v.pos, f"value {y:g} out of range [{attr.value_range[0]:g}, "
                                        f"{attr.value_range[1]:g}] for continuous attribute {name!r}")
    return y


def parse_names(expr: str, names: Sequence[str], what: str = "name") -> Any:
    """Bare names (e.g. trained models; `what` names them in errors) combined with `&`, `|`, `!` and parentheses
    → a tree of `Atom(name)`. No aliases (`&&` is an error). Unknown names are errors at their column."""
    names = list(names)

    def atom(t: Token, toks: list[Token], pos: int):
        if t.text not in names:
            raise syntax_error(expr, t.pos, f"unknown {what} {t.text!r} (known: {', '.join(names)})")
        return Atom(t.text), pos + 1

    return _parse(expr, tokenize(expr, aliases=False), atom, expect=f"a {what}")


# --------------------------------------------------------------------------------------------------------------
# Interpretations

def fold(tree: Any, *, atom: Callable[[Atom], Any], not_: Callable[[Any], Any], and_: Callable[[list], Any],
         or_: Callable[[list], Any]) -> Any:
    """Interpret a tree bottom-up: `atom(Atom)`, `not_(x)`, `and_([x, …])`, `or_([x, …])`."""
    def go(t):
        if isinstance(t, Atom):
            return atom(t)
        if isinstance(t, Not):
            return not_(go(t.item))
        items = [go(s) for s in t.items]
        return and_(items) if isinstance(t, And) else or_(items)
    return go(tree)


def atoms(tree: Any) -> list[tuple[str, Any]]:
    """The (name, value) atoms of a tree, in order of appearance, without duplicates."""
    out: list = []

    def add(a: Atom):
        if (a.name, a.value) not in out:
            out.append((a.name, a.value))
        return None

    fold(tree, atom=add, not_=lambda x: None, and_=lambda xs: None, or_=lambda xs: None)
    return out


def atom_label(attributes: Mapping[str, Any], name: str, value: Any) -> str:
    """'name=value' with the class name for discrete attributes that have names."""
    a = attributes[name]
    if a.kind == DISCRETE and a.classes:
        return f"{name}={a.classes[int(value)]}"
    return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"


def satisfied(tree: Any, attributes: Mapping[str, Any], read: Callable[[str, Any], np.ndarray],
              ) -> tuple[np.ndarray, dict]:
    """(bool[N] whether each sample satisfies the tree, {"name=value": bool[N]} per atom), with
    `read(name, value) -> bool[N]` deciding each atom (by latent classifiers, a judge, …)."""
    table = {atom_label(attributes, n, v): np.asarray(read(n, v), bool) for n, v in atoms(tree)}
    sat = fold(tree, atom=lambda a: table[atom_label(attributes, a.name, a.value)], not_=np.logical_not,
               and_=np.logical_and.reduce, or_=np.logical_or.reduce)
    return np.asarray(sat, bool), table


__all__ = ["Atom", "Not", "And", "Or", "Token", "syntax_error", "tokenize", "looks_like_lace", "parse",
           "parse_names", "fold", "atoms", "atom_label", "satisfied"]
