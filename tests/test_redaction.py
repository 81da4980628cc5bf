"""The redactor masks registered secrets and credential patterns it was never told about."""

from __future__ import annotations

import pytest

from cleversync.redaction import MASK, Redactor


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    r.register("district-secret-123")
    r.register_basic("client-id-abc", "client-secret-xyz")
    return r


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("token is district-secret-123!", "district-secret-123"),
        ("url-encoded district-secret-123 as district-secret-123", "district-secret-123"),
        (
            "Authorization: Basic Y2xpZW50LWlkLWFiYzpjbGllbnQtc2VjcmV0LXh5eg==",
            "Y2xpZW50LWlkLWFiYzpjbGllbnQtc2VjcmV0LXh5eg",
        ),
        ("Authorization: Bearer a9d8f54716263679e484e2de6703c0a514c8dda7", "a9d8f547"),
        ("{'authorization': 'Bearer zzzzzzzzzz'}", "zzzzzzzzzz"),
        ("Server=tcp:x,1433;User ID=u;Password=pa55word;Encrypt=True", "pa55word"),
        ("Driver={ODBC Driver 18 for SQL Server};PWD={p;a}}ss};UID=u", "p;a}}ss"),
        ('Password="quoted;pass"', "quoted;pass"),
        ("postgresql+psycopg://sync:pa%40ss@db.example.com/school", "pa%40ss"),
        ('{"access_token": "0123456789abcdef", "token_type": "bearer"}', "0123456789abcdef"),
        ("grant_type=client_credentials&client_secret=form-secret-1", "form-secret-1"),
    ],
)
def test_secrets_are_masked(redactor: Redactor, text: str, leak: str) -> None:
    out = redactor.redact(text)
    assert leak not in out
    assert MASK in out


def test_ordinary_text_is_left_alone(redactor: Redactor) -> None:
    text = "Synced 300 students for school 7 (Lincoln Elementary) in 2.1 s"
    assert redactor.redact(text) == text


def test_short_values_are_not_registered() -> None:
    r = Redactor()
    r.register("1")
    r.register("")
    r.register(None)
    assert r.redact("school 1 has 10 rows") == "school 1 has 10 rows"


def test_url_encoded_forms_are_masked() -> None:
    r = Redactor()
    r.register("p@ss/word+1")
    assert "p%40ss%2Fword%2B1" not in r.redact("q=p%40ss%2Fword%2B1")


def test_overlapping_secrets_are_masked_whole() -> None:
    # Longest first, value by value, would cut "BCCCCCCC" out of "AAAAAAB...", leaving
    # "AAAAAA" of the first secret in the text.
    r = Redactor()
    for secret in ("AAAAAAB", "CCCCCCC", "BCCCCCCC"):
        r.register(secret)
    assert r.redact("x AAAAAABCCCCCCC y") == f"x {MASK}{MASK} y"  # both, whole


def test_values_are_masked_as_one_regular_expression_of_them_would() -> None:
    # The masking is not a regular expression (one per registration cost too much), but it
    # must mask exactly what the alternation of the values, longest first, masks.
    import random
    import re

    rng = random.Random(16)
    for _ in range(3000):
        secrets = {"".join(rng.choice("AB") for _ in range(rng.randint(6, 8))) for _ in range(3)}
        text = "".join(rng.choice("AB ") for _ in range(rng.randint(0, 30)))
        for secret in secrets:
            at = rng.randint(0, len(text))
            text = text[:at] + secret + text[at:]
        r = Redactor()
        for secret in secrets:
            r.register(secret)
        ordered = sorted(secrets, key=len, reverse=True)
        expected = re.compile("|".join(re.escape(s) for s in ordered)).sub(MASK, text)
        assert r.redact(text) == expected, (secrets, text)
