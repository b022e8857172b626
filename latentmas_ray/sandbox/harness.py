"""The test harness: calls a function on test inputs and turns each result into plain data.

Two sides use this one file:
  * inside the jail, the runner executes its SOURCE (read from this file by the scorer and sent
    in the run's header) in a namespace of its own, BEFORE the untrusted program is loaded;
    `prepare(spec, emit)` decodes the inputs then, and the `check(env)` it returns runs after
    the program: for each input it calls the entry point, reduces the result (see TRANSFORMS),
    converts it to exact builtin types and sends it out as a "VALUE <i> <json>" line (or
    "DIGEST <i> <sha256>" when the JSON would exceed VALUE_CAP bytes).
  * the trusted scorer imports it as latentmas_ray.sandbox.harness to build the spec
    (`make_spec`) and to decode what came back (`decode`, `digest`).

Standard library only, no imports from latentmas_ray. Nothing here is trusted once the program
ran: the program shares the interpreter and may patch any of it. That is fine by design: what
the harness sends is, at worst, a value the program chose, and the scorer compares it, outside
the jail, with expected values the jail never sees (package docstring). The exact-type checks
use references captured when this file is loaded (before the program), not isinstance, so an
honest answer is converted faithfully even if a lying object is among the results.
"""

import copy as _copy
import hashlib as _hashlib
import json as _json
from itertools import chain as _chain

VALUE_CAP = 1 << 20   # bytes of JSON per value; a bigger value is sent as its digest
DIGEST_CHUNK = 256    # elements per repr() call when digesting a long list/tuple

# How each result is reduced before it is sent (EvalPlus's comparison modes need no more):
#   value     the result itself
#   iterable  list(result): the scorer compares it as a set (set(out) accepts any iterable)
#   truth     True/False by identity, else "is not None" (regex tasks: matched or not)
TRANSFORMS = ("value", "iterable", "truth")

# References captured now, before any untrusted code can patch builtins.
_type, _len, _list, _tuple, _dict, _set, _frozenset = type, len, list, tuple, dict, set, frozenset
_int, _float, _complex, _str, _bytes, _bool = int, float, complex, str, bytes, bool
_issubclass, _callable, _repr, _format, _slice = issubclass, callable, repr, format, slice
_NoneType = type(None)
_ATOMS = frozenset((_NoneType, _bool, _int, _float, _str))
_EXACT = _ATOMS | {_complex, _bytes, _tuple, _list, _dict, _set, _frozenset}
_dumps, _loads, _deepcopy, _sha256 = _json.dumps, _json.loads, _copy.deepcopy, _hashlib.sha256
_int_exact, _float_exact = _int.__int__, _float.__float__   # a subclass's value as the base type
_complex_real, _complex_imag = _complex.__dict__["real"].__get__, _complex.__dict__["imag"].__get__
_tuple_iter, _list_iter, _dict_items = _tuple.__iter__, _list.__iter__, _dict.items
_set_iter, _frozenset_iter = _set.__iter__, _frozenset.__iter__
_str_getitem, _bytes_getitem = _str.__getitem__, _bytes.__getitem__


class Unsupported(TypeError):
    """A result that is not plain data (an object of the program's own class, a generator...)."""


class TooBig(ValueError):
    """The JSON of a value would exceed the cap."""


class Digest:
    """A value that was too big to send: the sha256 of its canonical form (see `digest`)."""

    __slots__ = ("hex",)

    def __init__(self, hex_digest: str):
        self.hex = hex_digest

    def __eq__(self, other):
        return _type(other) is Digest and other.hex == self.hex

    def __hash__(self):
        return hash(self.hex)

    def __repr__(self):
        return f"<a value too big to show, sha256 {self.hex[:16]}>"


class Typed:
    """A result whose own type was not an exact builtin type (a numpy scalar, a subclass of
    float...): its value as exact builtin data, and the type's name. EvalPlus checks
    type(out) == type(exp) before its tolerance, so the scorer needs the name; the value is
    what the comparison uses, never the program's object."""

    __slots__ = ("type_name", "value")

    def __init__(self, type_name: str, value):
        self.type_name, self.value = type_name, value

    def __eq__(self, other):
        return _type(other) is Typed and (other.type_name, other.value) == (self.type_name, self.value)

    def __hash__(self):
        return hash(self.type_name)

    def __repr__(self):
        return f"{self.type_name}({self.value!r})"


# ------------------------------------------------------------------------------------------
# Any value -> the same value made of exact builtin types only

def to_exact(x, depth: int = 0):
    """`x` rebuilt from exact builtin types (a subclass of int, str, tuple, dict... becomes its
    base type's value, read with the base type's own methods, so an overridden __eq__, __iter__
    or __class__ plays no part; numpy scalars become Python numbers). Raises Unsupported."""
    if depth > 200:
        raise Unsupported("a result nested more than 200 levels deep")
    t = _type(x)
    if t in _ATOMS or t is _complex or t is _bytes:
        return x
    if t is _list or t is _tuple:
        kinds = _set(map(_type, x))
        if kinds <= _ATOMS:
            return x
        if kinds <= {_list, _tuple} and _set(map(_type, _chain.from_iterable(x))) <= _ATOMS:
            return x   # a list of tuples of numbers/strings (the common big result): no copy
        items = [to_exact(e, depth + 1) for e in (_list_iter(x) if t is _list else _tuple_iter(x))]
        return items if t is _list else _tuple(items)
    if t is _dict:
        return {to_exact(k, depth + 1): to_exact(v, depth + 1) for k, v in _dict_items(x)}
    if t is _set or t is _frozenset:
        items = [to_exact(e, depth + 1) for e in (_set_iter(x) if t is _set else _frozenset_iter(x))]
        return _set(items) if t is _set else _frozenset(items)
    # A subclass (bool cannot be subclassed): its value as the base type stores it.
    if _issubclass(t, _int):
        return _int_exact(x)
    if _issubclass(t, _float):
        return _float_exact(x)
    if _issubclass(t, _str):
        return _str_getitem(x, _slice(None))
    if _issubclass(t, _bytes):
        return _bytes_getitem(x, _slice(None))
    if _issubclass(t, _complex):
        return _complex(_complex_real(x), _complex_imag(x))
    if _issubclass(t, _dict):
        return to_exact(_dict(_list(_dict_items(x))), depth + 1)
    for base, read in ((_tuple, _tuple_iter), (_list, _list_iter), (_frozenset, _frozenset_iter),
                       (_set, _set_iter)):
        if _issubclass(t, base):
            return to_exact(base(_list(read(x))), depth + 1)
    name = getattr(t, "__name__", "?")
    if getattr(t, "__module__", "") == "numpy" and name != "ndarray" and hasattr(x, "tolist"):
        return to_exact(x.tolist(), depth + 1)   # a numpy scalar: its Python number
    raise Unsupported(f"a result of type {name!r} (only Python's builtin data types can be checked)")


# ------------------------------------------------------------------------------------------
# Exact values <-> JSON text (tuples, sets, dicts with any keys, complex, bytes tagged)

def encode(x, cap: int | None = VALUE_CAP) -> str:
    """JSON for a value made of exact builtin types; TooBig past `cap` characters."""
    out: list[str] = []
    budget = [cap if cap is not None else -1]
    _encode(x, out, budget)
    return "".join(out)


def _put(out: list, budget: list, s: str) -> None:
    if budget[0] >= 0:
        budget[0] -= _len(s)
        if budget[0] < 0:
            raise TooBig()
    out.append(s)


def _encode(x, out: list, budget: list) -> None:
    t = _type(x)
    if t is _int:
        try:
            _put(out, budget, _repr(x))
        except ValueError:   # more digits than int->str allows: hexadecimal
            _put(out, budget, '{"i":"%s"}' % _format(x, "x"))
    elif t in _ATOMS:
        _put(out, budget, _dumps(x))   # floats: repr, or NaN / Infinity
    elif t is _list or t is _tuple:
        if t is _list and _len(x) <= 4096 and _set(map(_type, x)) <= {_int, _str, _bool, _NoneType}:
            try:   # the common case at C speed
                _put(out, budget, _dumps(x))
                return
            except ValueError:   # an int too long for decimal: element by element below
                pass
        _put(out, budget, "[" if t is _list else '{"t":[')
        for k, e in enumerate(x):
            if k:
                _put(out, budget, ",")
            _encode(e, out, budget)
        _put(out, budget, "]" if t is _list else "]}")
    elif t is _dict:
        _put(out, budget, '{"d":[')
        for k, (key, value) in enumerate(x.items()):
            _put(out, budget, ",[" if k else "[")
            _encode(key, out, budget)
            _put(out, budget, ",")
            _encode(value, out, budget)
            _put(out, budget, "]")
        _put(out, budget, "]}")
    elif t is _set or t is _frozenset:
        _put(out, budget, '{"S":' if t is _set else '{"F":')
        _encode(_list(x), out, budget)
        _put(out, budget, "}")
    elif t is _complex:
        _put(out, budget, '{"c":[%s,%s]}' % (_dumps(x.real), _dumps(x.imag)))
    elif t is _bytes:
        _put(out, budget, '{"b":"%s"}' % x.hex())
    else:
        raise Unsupported(f"cannot encode a {getattr(t, '__name__', '?')}")


_TAGS = {"y": lambda v: Typed(_str(v[0]), v[1]),
         "t": _tuple, "S": _set, "F": _frozenset, "d": lambda v: _dict(map(_tuple, v)),
         "c": lambda v: _complex(v[0], v[1]), "b": _bytes.fromhex, "i": lambda v: _int(v, 16)}


def _untag(obj: dict):
    if _len(obj) != 1:
        raise ValueError("not a tagged value")
    (tag, value), = obj.items()
    return _TAGS[tag](value)


def decode(text: str):
    """The value `encode` wrote. Raises ValueError (or KeyError/TypeError/RecursionError) on
    text it did not write."""
    return _loads(text, object_hook=_untag)


def digest(x) -> str:
    """sha256 of a canonical form of a value made of exact builtin types: long lists/tuples in
    chunks of DIGEST_CHUNK reprs (never one huge string), anything else its repr. Two values
    with the same digest are equal; equal dicts/sets built in different orders may differ."""
    h = _sha256()
    _feed(h, x)
    return h.hexdigest()


def _feed(h, x) -> None:
    t = _type(x)
    if (t is _list or t is _tuple) and _len(x) > DIGEST_CHUNK:
        h.update(b"[" if t is _list else b"(")
        for k in range(0, _len(x), DIGEST_CHUNK):
            _feed(h, x[k:k + DIGEST_CHUNK])
        h.update(b"]")
        return
    try:
        text = _repr(x)
    except ValueError:   # an int too long for repr
        raise Unsupported("an integer too long to compare") from None
    h.update(text.encode("utf-8", "surrogatepass"))


# ------------------------------------------------------------------------------------------
# The spec (built by the scorer) and the check (run in the jail)

def make_spec(entry: str, inputs_json: str, transform: str = "value") -> str:
    """The JSON text a test run carries: the function to call, its argument lists as
    `encode([args, ...])` wrote them (real Python values: tuples, complex... survive), how to
    reduce each result."""
    assert transform in TRANSFORMS, transform
    return _dumps({"entry": entry, "inputs": inputs_json, "transform": transform})


def _type_name(t) -> str:
    name = getattr(t, "__qualname__", None) or getattr(t, "__name__", "?")
    module = getattr(t, "__module__", "")
    return f"{module}.{name}" if _type(module) is _str and module != "builtins" else _str(name)


def reduce_result(out, transform: str):
    if transform == "iterable":
        return _list(out)
    if transform == "truth":
        return True if out is True else False if out is False else out is not None
    return out


def prepare(spec_text: str, emit):
    """Decode the spec now (before the program loads); return check(env), which calls
    env[entry] on a deep copy of each input and emits "TEST i", then "VALUE i <json>" or
    "DIGEST i <hex>". Any exception (the program's, or Unsupported) propagates: the test fails."""
    spec = _loads(spec_text)
    entry, transform = spec["entry"], spec["transform"]
    inputs = decode(spec["inputs"])

    def check(env: dict) -> None:
        fn = env.get(entry)
        if not _callable(fn):
            raise NameError(f"the code defines no function {entry!r}")
        for i, args in enumerate(inputs):
            emit(f"TEST {i}")
            result = reduce_result(fn(*_deepcopy(args)), transform)
            kind = _type(result)
            out = to_exact(result)
            try:
                text = encode(out)
                if kind not in _EXACT:   # the scorer's type check needs the name (see Typed)
                    text = '{"y":[%s,%s]}' % (_dumps(_type_name(kind)), text)
                emit(f"VALUE {i} {text}")
            except TooBig:
                emit(f"DIGEST {i} {digest(out)}")

    return check
