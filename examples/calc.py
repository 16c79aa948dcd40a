"""The calculator bot: send it ``1+1``, it replies ``2``.

This is the official SDK's "adding bot" done safely. The original passes the message to
Python's built-in ``eval``, so anyone who can talk to the bot can run code on the server. Here the text is parsed
with :mod:`ast` and only numbers, ``+ - * / // % **``, unary ``+``/``-`` and parentheses are
evaluated, with limits on length, nesting and the size of numbers so that ``9**9**9`` is refused
instead of eating the CPU.

Run it against DingTalk (or locally, with ``--emulator``)::

    export DINGTALK_CLIENT_ID=... DINGTALK_CLIENT_SECRET=...
    dingworker examples.calc:route
    dingworker --emulator examples.calc:route

Example:
    >>> evaluate("2*(3+4)")
    14
    >>> evaluate("9**9**9")
    Traceback (most recent call last):
    ...
    examples.calc.CalcError: that number would be too large
"""

from __future__ import annotations

import ast
import math
import operator
import unicodedata
from typing import Callable, Dict, Type, Union

import dingsync

__all__ = ["route", "evaluate", "format_number", "answer", "CalcError", "HELP"]

Number = Union[int, float]

#: Longest expression accepted, in characters.
MAX_LENGTH = 200
#: Deepest nesting of operators and parentheses accepted.
MAX_DEPTH = 32
#: Largest integer result accepted, in bits (about 1,200 decimal digits).
MAX_BITS = 4096

HELP = (
    "I am a calculator: send me arithmetic such as 1+1 or 2*(3+4). "
    "I understand numbers, + - * / // % ** and parentheses."
)

route = dingsync.Router()


class CalcError(ValueError):
    """The text is not arithmetic the bot accepts; the message is fit to show to the user."""


_BINARY: Dict[Type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: Dict[Type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def _check_size(value: Number) -> Number:
    if isinstance(value, complex):
        raise CalcError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise CalcError("that number would be too large")
    if isinstance(value, float) and math.isnan(value):
        raise CalcError("the result is not a number")
    if isinstance(value, float) and math.isinf(value):
        raise CalcError("that number would be too large")
    return value


def _power(base: Number, exponent: Number) -> Number:
    # Estimate the size before computing: 9**9**9 would otherwise run for minutes.
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * math.log2(abs(base)) > MAX_BITS:
            raise CalcError("that number would be too large")
    result = base**exponent
    if isinstance(result, complex):
        raise CalcError("the result is not a real number")
    return result


def _eval(node: ast.AST, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise CalcError("that expression is nested too deeply")
    if isinstance(node, ast.Constant):
        # bool is an int subclass; True+True is not arithmetic a user typed.
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        raise CalcError(f"I only understand numbers, not {node.value!r}")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check_size(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.BinOp):
        left = _eval(node.left, depth + 1)
        right = _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        func = _BINARY.get(type(node.op))
        if func is not None:
            return _check_size(func(left, right))
    raise CalcError(_refusal(node))


def _refusal(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"I don't know what {node.id!r} is; I only work with numbers"
    if isinstance(node, ast.Call):
        return "calling functions is not allowed"
    if isinstance(node, ast.Attribute):
        return "attributes are not allowed"
    return "only numbers, + - * / // % ** and parentheses are allowed"


def evaluate(expression: str) -> Number:
    """Evaluate arithmetic safely and return an int or a float.

    Full-width characters (``１＋１``) are normalised and a trailing ``=`` is ignored.

    Raises:
        CalcError: the text is not accepted arithmetic, divides by zero or is too large.

    Example:
        >>> evaluate("１＋１ =")
        2
        >>> evaluate("7 / 2"), evaluate("-2 ** 2"), evaluate("7 // -2")
        (3.5, -4, -4)
        >>> evaluate("__import__('os')")
        Traceback (most recent call last):
        ...
        examples.calc.CalcError: calling functions is not allowed
    """
    text = unicodedata.normalize("NFKC", expression).strip().rstrip("=").strip()
    if not text:
        raise CalcError("there is nothing to calculate")
    if len(text) > MAX_LENGTH:
        raise CalcError(f"that expression is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalcError("that is not an arithmetic expression") from None
    try:
        return _eval(tree.body, 0)
    except ZeroDivisionError:
        raise CalcError("division by zero") from None
    except (OverflowError, MemoryError, RecursionError):
        raise CalcError("that number would be too large") from None


def format_number(value: Number) -> str:
    """Show a result the way a person writes it: ``4.0`` as ``4``, ``0.1+0.2`` as ``0.3``.

    Example:
        >>> format_number(4.0), format_number(0.1 + 0.2), format_number(10 ** 20)
        ('4', '0.3', '100000000000000000000')
    """
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.12g}"
    return str(value)


def answer(text: str) -> str:
    """The bot's reply to ``text``: the result, an error, or the help text.

    Example:
        >>> answer("1+1"), answer("1/0")
        ('2', 'Error: division by zero')
        >>> answer("hello") == HELP
        True
    """
    try:
        return format_number(evaluate(text))
    except CalcError as exc:
        if not any(ch.isdigit() for ch in text):
            return HELP  # words, not a broken formula: say what the bot is for
        return f"Error: {exc}"


@route.chatbot
def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
    """Reply to every message with :func:`answer`."""
    reply = answer(msg.text)
    ctx.logger.info("calc %r -> %r", msg.text, reply)
    ctx.reply_text(reply)
