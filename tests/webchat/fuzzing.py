"""Hypothesis strategies shared by the fuzz tests: JSON values with the nasty cases this site
must refuse cleanly (huge integers, non-finite floats, NUL, lone surrogates, deep nesting),
placed where the parsers look for them."""

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz(max_examples: int) -> settings:
    """Bounded and derandomized: CI runs the same examples every time, and the suite stays
    fast; no example database is written."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


nasty_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "\u202e", "💥" * 3, "x" * 300]),
)
numbers = st.one_of(
    st.integers(min_value=-(10**80), max_value=10**80),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**400, 1.5, -0.0, 1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, nasty_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)
    ),
    max_leaves=12,
)


def deep(depth: int):
    """A list nested `depth` levels deep."""
    value = []
    for _ in range(depth):
        value = [value]
    return value


# Deeper than the parsers accept, shallower than json.dumps can write (the tests write frames).
values = st.one_of(json_values, st.integers(1, 600).map(deep))


def objects_with(keys: list[str]):
    """JSON objects whose keys are mostly the ones a parser reads, with any values."""
    key = st.one_of(st.sampled_from(keys), nasty_text)
    return st.dictionaries(key, values, max_size=len(keys) + 2)
