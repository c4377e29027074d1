"""Storage-URL passwords are masked in every form a URL takes, and wherever lrfind shows one."""

from __future__ import annotations

import logging

import pytest

from lrfind.secrets import mask_text, mask_url, remember, url_secrets

# (URL as typed, what must show, the password's characters that must not)
MASKED = [
    ("postgresql://me:s3cret@db.local:5432/studies", "postgresql://me:***@db.local:5432/studies", "s3cret"),
    ("postgresql://u:p@ss@host/db", "postgresql://u:***@host/db", "p@ss"),  # raw @ in the password
    ("postgresql://u:p@s@s@host/db", "postgresql://u:***@host/db", "s@s"),
    ("postgresql://u:p%40ss%3A@host/db", "postgresql://u:***@host/db", "p%40ss"),  # percent-encoded
    ("postgresql://u:p:w/x@h/db", "postgresql://u:***@h/db", "p:w/x"),
    ("postgresql://u:p#s?s@h/db", "postgresql://u:***@h/db", "p#s?s"),  # raw ? and # in the password
    ("postgresql+psycopg2://u:pw1@h:5432/db", "postgresql+psycopg2://u:***@h:5432/db", "pw1"),
    ("postgresql://host/db?user=u&password=PW9", "postgresql://host/db?user=u&password=***", "PW9"),
    ("postgresql://host/db?password=PW9&user=u", "postgresql://host/db?password=***&user=u", "PW9"),
    ("postgresql://h/db?user=u&pass=PW9", "postgresql://h/db?user=u&pass=***", "PW9"),
    ("postgresql://h/db?user=u&passwd=PW9", "postgresql://h/db?user=u&passwd=***", "PW9"),
    ("postgresql://h/db?sslmode=require&sslpassword=PW9", "postgresql://h/db?sslmode=require&sslpassword=***",
     "PW9"),
    ("postgresql://h/db?PASSWORD=PW9", "postgresql://h/db?PASSWORD=***", "PW9"),
    ("postgresql://h/db?pass%77ord=PW9", "postgresql://h/db?pass%77ord=***", "PW9"),  # encoded name
    ("postgresql://h/db?user=u&password=p%40W9", "postgresql://h/db?user=u&password=***", "p%40W9"),
    ("postgresql://h/db?user=u&password=a b9", "postgresql://h/db?user=u&password=***", "b9"),
    ("postgresql://u:pw1@h/db?password=PW9", "postgresql://u:***@h/db?password=***", "PW9"),
    ("mysql+pymysql://u:pw1@h/db?charset=utf8", "mysql+pymysql://u:***@h/db?charset=utf8", "pw1"),
    ("host=h user=u password=PW9 dbname=x", "host=h user=u password=*** dbname=x", "PW9"),  # libpq DSN
    ("host=h password='a b9' dbname=x", "host=h password=*** dbname=x", "b9"),
]
UNCHANGED = [
    "sqlite:///studies/s.db",
    "sqlite:////tmp/a:b@c.db",  # a file path with : and @ is not a password
    "postgresql://u@host/db",
    "postgresql://host:5432/db?user=u&sslmode=require",
    "postgresql://u:@host/db",  # an empty password: nothing to hide
    "not a url",
]


@pytest.mark.parametrize("url,shown,secret", MASKED)
def test_passwords_are_masked_in_every_url_form(url, shown, secret):
    assert mask_url(url) == shown
    assert secret not in mask_url(url)


@pytest.mark.parametrize("url", UNCHANGED)
def test_urls_without_a_password_are_unchanged(url):
    assert mask_url(url) == url
    assert url_secrets(url) == set()


def test_mask_text_removes_the_password_in_any_spelling_from_a_message():
    url = "postgresql://u:p@ss word@h/db"
    message = (f"could not parse {url!r}; postgresql+psycopg://u:p@ss word@h/db; "
               "password p%40ss%20word or p@ss word")
    masked = mask_text(message, url)
    assert "p@ss" not in masked and "p%40ss" not in masked and "ss word" not in masked and "ss%20" not in masked
    assert "postgresql://u:***@h/db" in masked


def test_a_remembered_url_is_masked_in_log_records(caplog):
    url = "postgresql://h/db?user=u&password=Remembered-7f3"
    remember(url)
    with caplog.at_level(logging.WARNING, logger="optuna.storages"):
        logging.getLogger("optuna.storages").warning("cannot reach %s (password %s)", url, "Remembered-7f3")
    assert "Remembered-7f3" not in caplog.text and "password=***" in caplog.text
    assert "Remembered-7f3" not in mask_text(f"Traceback ... {url}")


@pytest.mark.parametrize("url,secret,needle", [
    ("postgresql://u:Pw-Zq81@127.0.0.1:1/db", "Pw-Zq81", "cannot open study storage"),
    ("postgresql://127.0.0.1:1/db?user=u&password=Pw-Zq81", "Pw-Zq81", "cannot open study storage"),
    ("postgresql://u:Pw%40Zq81@127.0.0.1:1/db", "Zq81", "cannot open study storage"),
    # a raw @ in the password: sqlalchemy would read "ss-Zq81@127.0.0.1" as the host and the
    # driver's error would quote it; refused before connecting, with how to spell it
    ("postgresql://u:p@ss-Zq81@127.0.0.1:1/db", "ss-Zq81", "percent-encode"),
])
def test_an_unreachable_storage_is_one_masked_line(url, secret, needle, example_dataset, tmp_path, capsys):
    pytest.importorskip("psycopg2")
    from lrfind.cli import main

    out = tmp_path / "s"
    rc = main(["study", str(example_dataset), "--name", "s", "--storage", url, "--space", "tiny",
               "--out", str(out), "--no-progress", "--score", "loss"])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and needle in lines[0] and "***" in lines[0], captured.err
    assert secret not in captured.err + captured.out
    assert not out.exists()


def test_a_raw_reserved_character_in_the_password_is_named_not_shown():
    from lrfind.secrets import password_needs_encoding

    assert password_needs_encoding("postgresql://u:p%40ss@h/db") is None
    assert password_needs_encoding("postgresql://u:p:ss@h/db") is None
    assert password_needs_encoding("sqlite:////tmp/a:b@c.db") is None
    assert password_needs_encoding("postgresql://h:5432/db?user=me@corp") is None
    problem = password_needs_encoding("postgresql://u:p@ss/x@h/db")
    assert "@ as %40" in problem and "/ as %2F" in problem and "p@ss" not in problem
