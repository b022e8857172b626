"""A pass cannot be forged: every attempt to look correct without returning the right values
scores as failed, for an MBPP+ and a HumanEval+ row in both file formats.

The attacks target the old weak points: comparisons run on the candidate's objects (lying
__eq__/__hash__/__class__, subclasses of builtins), patched builtins and harness functions,
swallowed exceptions, and early exits or forged report lines that look like success.
"""

from __future__ import annotations

import math

import pytest

from latentmas_ray.sandbox import SandboxLimits
from latentmas_ray.sandbox.harness import Unsupported, decode, encode, to_exact
from latentmas_ray.tasks.code_checks import check_one
from latentmas_ray.tasks.code_tasks import parse_humanevalplus, parse_mbppplus, score_code_many
from latentmas_ray.tasks.files import read_rows

LIMITS = SandboxLimits(wall_s=20, cpu_s=20)
ROWS = {"mbppplus.jsonl": "Mbpp/3", "mbppplus_hf.jsonl": "Mbpp/3",
        "humanevalplus.jsonl": "HumanEval/0", "humanevalplus_hf.jsonl": "HumanEval/0"}


@pytest.fixture(scope="module")
def samples(datasets_dir):
    out = []
    for name, sid in ROWS.items():
        parse = parse_mbppplus if name.startswith("mbpp") else parse_humanevalplus
        rows, _ = read_rows(datasets_dir / name)
        got, _ = parse(rows, name, "error")
        out.append(next(s for s in got if s.id == sid))
    return out


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


# Each attack is module code in which {entry} is the function under test.
LIAR = '''
class Liar:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __hash__(self): return 0
    def __bool__(self): return True
    def __len__(self): return 0
    def __iter__(self): return iter(())
    def __abs__(self): return 0
    def __sub__(self, other): return 0
    __rsub__ = __sub__
    def __lt__(self, other): return True
    __le__ = __gt__ = __ge__ = __lt__
    def __float__(self): return 0.0
'''
ATTACKS = {
    "eq_always_true": LIAR + "def {entry}(*args, **kwargs):\n    return Liar()\n",
    "class_property_int": LIAR + "Liar.__class__ = property(lambda self: int)\n"
                                 "def {entry}(*a, **k):\n    return Liar()\n",
    "class_property_bool": "class B:\n    __class__ = property(lambda self: bool)\n"
                           "    def __eq__(self, o): return True\n    __hash__ = object.__hash__\n"
                           "def {entry}(*a, **k):\n    return B()\n",
    "class_property_list": LIAR + "Liar.__class__ = property(lambda self: list)\n"
                                  "def {entry}(*a, **k):\n    return Liar()\n",
    "int_subclass": "class I(int):\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
                    "    __hash__ = int.__hash__\ndef {entry}(*a, **k):\n    return I(7)\n",
    "bool_like_int_subclass": "class I(int):\n    def __eq__(self, o): return True\n"
                              "    __hash__ = int.__hash__\n    __class__ = property(lambda s: bool)\n"
                              "def {entry}(*a, **k):\n    return I(2)\n",
    "float_subclass": "class F(float):\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
                      "    __hash__ = float.__hash__\ndef {entry}(*a, **k):\n    return F(0.5)\n",
    "str_subclass": "class S(str):\n    def __eq__(self, o): return True\n    __hash__ = str.__hash__\n"
                    "def {entry}(*a, **k):\n    return S('x')\n",
    "list_subclass": "class L(list):\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
                     "    def __iter__(self): return iter([True])\ndef {entry}(*a, **k):\n    return L()\n",
    "dict_subclass": "class D(dict):\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
                     "def {entry}(*a, **k):\n    return D()\n",
    "patched_builtins": "import builtins, math, json\nbuiltins.isinstance = lambda *a: True\n"
                        "builtins.abs = lambda x: 0\nbuiltins.len = lambda x: 0\n"
                        "math.isclose = lambda *a, **k: True\njson.dumps = lambda *a, **k: 'true'\n"
                        "builtins.type = lambda *a: bool\n"
                        "def {entry}(*a, **k):\n    return None\n",
    "patched_harness_via_gc": "import gc\n"
                              "for o in gc.get_objects():\n"
                              "    if isinstance(o, dict) and 'prepare' in o and 'encode' in o:\n"
                              "        o['encode'] = lambda *a, **k: 'true'\n"
                              "        o['to_exact'] = lambda x, d=0: True\n"
                              "        o['_deepcopy'] = lambda x: x\n"
                              "def {entry}(*a, **k):\n    return None\n",
    "patched_main_module": "import sys\nm = sys.modules['__main__']\n"
                           "orig = m.write_all\n"
                           "def fake(fd, data):\n    orig(fd, data.replace(b'null', b'true'))\n"
                           "m.write_all = fake\n"
                           "def {entry}(*a, **k):\n    return None\n",
    "forged_nonce_from_frames": "import os, sys\n"
                                "f = sys._getframe()\nnonce = rfd = None\n"
                                "while f is not None:\n"
                                "    nonce = f.f_locals.get('nonce', nonce)\n"
                                "    rfd = f.f_locals.get('rfd', rfd)\n    f = f.f_back\n"
                                "os.write(rfd, f'READY\\nPASS {{nonce}}\\n'.encode())\nos._exit(0)\n"
                                "def {entry}(*a, **k):\n    return None\n",
    "forged_values_then_nonce": "import inspect, os\nnonce = rfd = None\n"
                                "for fr in inspect.stack():\n"
                                "    nonce = fr.frame.f_locals.get('nonce', nonce)\n"
                                "    rfd = fr.frame.f_locals.get('rfd', rfd)\n"
                                "lines = ''.join(f'TEST {{i}}\\nVALUE {{i}} true\\n' for i in range(5000))\n"
                                "os.write(rfd, (lines + f'PASS {{nonce}}\\n').encode())\nos._exit(0)\n"
                                "def {entry}(*a, **k):\n    return True\n",
    "swallowed_exceptions": "import sys, atexit\nsys.excepthook = lambda *a: None\n"
                            "atexit.register(lambda: print('PASS ' + '0' * 64))\n"
                            "def {entry}(*a, **k):\n    try:\n        raise ValueError('wrong')\n"
                            "    except BaseException:\n        pass\n    return None\n",
    "raise_after_lying": "def {entry}(*a, **k):\n    raise SystemExit(0)\n",
    "sys_exit_at_import": "import sys\nsys.exit(0)\ndef {entry}(*a, **k):\n    return None\n",
    "os_exit_at_import": "import os\nos._exit(0)\ndef {entry}(*a, **k):\n    return None\n",
    "systemexit_in_del": "class E:\n    def __del__(self):\n        raise SystemExit(0)\n"
                         "def {entry}(*a, **k):\n    E()\n    return None\n",
    "exit_from_thread": "import os, threading, time\n"
                        "threading.Thread(target=lambda: (time.sleep(0.01), os._exit(0)), daemon=True).start()\n"
                        "def {entry}(*a, **k):\n    time.sleep(1)\n    return None\n",
    "fake_success_lines": "import sys\nprint('PASS ' + '0' * 64)\nprint('VALUE 0 true')\n"
                          "sys.stderr.write('PASS ' + 'f' * 64 + '\\nall tests passed\\n')\n"
                          "def {entry}(*a, **k):\n    return None\n",
    "report_pipe_spam": "import os\nfor fd in range(3, 64):\n    try:\n"
                        "        os.write(fd, b'READY\\n' + b''.join(b'VALUE %d true\\n' % i for i in range(3000)))\n"
                        "    except OSError:\n        pass\n"
                        "def {entry}(*a, **k):\n    return 'wrong'\n",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_scores_as_failed(samples, attack):
    code = ATTACKS[attack]
    completions = [fenced(code.format(entry=s.entry_point)) for s in samples]
    scores = score_code_many(completions, samples, LIMITS, workers=2)
    for s, sc in zip(samples, scores):
        assert not sc.correct, (attack, s.id, CodeFormat(s), sc)


def CodeFormat(sample) -> str:   # noqa: N802 - a label in assertion messages
    return sample.meta.get("format", "?")


def test_the_same_rows_pass_with_their_canonical_solution(samples):
    # control: the rows above can pass, so the failures are the attacks'
    completions = [fenced(s.meta.get("prompt", "") + s.meta["canonical_solution"]) for s in samples]
    for s, sc in zip(samples, score_code_many(completions, samples, LIMITS, workers=2)):
        assert sc.correct, (s.id, CodeFormat(s), sc.error)


# ------------------------------------------------------------------------------------------
# The harness and the comparison, called directly

def test_to_exact_reads_subclasses_by_their_base_value():
    class I(int):
        def __eq__(self, o):
            return True
        __hash__ = int.__hash__

    class T(tuple):
        def __iter__(self):
            return iter((99,))

    v = to_exact(I(5))
    assert type(v) is int and v == 5
    t = to_exact(T((1, 2)))
    assert type(t) is tuple and t == (1, 2)
    assert decode(encode(to_exact([I(1), T((3,))]))) == [1, (3,)]


def test_to_exact_refuses_objects_that_fake_their_class():
    class Fake:
        __class__ = property(lambda self: int)

        def __eq__(self, o):
            return True

    assert isinstance(Fake(), int)   # the lie works on isinstance...
    with pytest.raises(Unsupported):
        to_exact(Fake())             # ...not on the harness
    with pytest.raises(Unsupported):
        to_exact([1, Fake()])


def test_numpy_scalars_become_python_numbers():
    np = pytest.importorskip("numpy")
    assert type(to_exact(np.float64(1.5))) is float and type(to_exact(np.int64(3))) is int
    with pytest.raises(Unsupported):
        to_exact(np.arange(3))   # EvalPlus fails arrays too (ambiguous truth value)


@pytest.mark.parametrize("out,exp,mode,atol,ok", [
    (1.0, 1, "plain", 0, True), (0.1 + 0.2, 0.3, "plain", 0, True), (0.31, 0.3, "plain", 0, False),
    ([1.0, 2.0], [1.0, 2.0000001], "plain", 0, True), ((1, 2), [1, 2], "plain", 0, False),
    ([2, 1], (1, 2), "set", 0, True), ([1], [1, 2], "set", 0, False),
    (True, "match", "not_none", 0, True), (False, None, "not_none", 0, True), (True, False, "not_none", 0, False),
    (1.0, None, "poly_root", 1e-4, True), (2.0, None, "poly_root", 1e-4, False),
])
def test_check_one_keeps_evalplus_semantics(out, exp, mode, atol, ok):
    args = [[-1, 1]]   # poly_root: -1 + x, root at 1
    assert (check_one(out, exp, mode, atol, args) is None) == ok
    assert math.isfinite(atol)
