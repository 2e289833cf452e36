import numpy as np
import pytest

from faregate.routing.features import FEATURE_NAMES, SCAN_CHARS, cheap_features


def feature(prompt: str, name: str, history_len: int = 0) -> float:
    return float(cheap_features(prompt, history_len)[FEATURE_NAMES.index(name)])


def test_shape_and_finite() -> None:
    for prompt in ["", "hi", "x" * 50_000, "ünïcödé ✓", "1.2.3 99,999,999,999,999,999,999"]:
        values = cheap_features(prompt)
        assert values.shape == (len(FEATURE_NAMES),)
        assert values.dtype == np.float32
        assert np.all(np.isfinite(values))


def test_markers() -> None:
    code = "```python\ndef f(x):\n    return x == 1\n```"
    assert feature(code, "code_fence") == 1.0
    assert feature(code, "code_words") > feature("Tell me a story about a dog.", "code_words")
    assert feature("Solve $x^2 + 3x = 10$ and compute \\frac{1}{2}.", "latex") > 0
    assert feature("Janet pays $5 for 3/4 of a cake and 20% tax.", "money") > 0
    assert feature("Janet pays $5 for 3/4 of a cake and 20% tax.", "fractions") > 0
    assert feature("Janet pays $5 for 3/4 of a cake and 20% tax.", "percents") > 0
    mcq = "Which is a prime?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:"
    assert feature(mcq, "choices") == np.float32(np.log1p(4))
    assert feature("a\nb\nc", "log_lines") == np.float32(np.log1p(3))
    assert feature("hi", "log_history", history_len=7) == np.float32(np.log1p(7))


def test_long_prompts_are_scanned_up_to_a_bound_and_scaled() -> None:
    unit = "How many apples are left? "
    short = unit * 10
    long = unit * (4 * SCAN_CHARS // len(unit))
    assert feature(long, "log_chars") > feature(short, "log_chars")
    ratio = len(long) / len(short)
    assert feature(long, "questions") == pytest.approx(np.log1p(10 * ratio), abs=0.01)
