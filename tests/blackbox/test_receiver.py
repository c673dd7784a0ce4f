"""The app's webhook receiver, seen from the wire.

Starts `dbxhook app --workers 0` (receiver only) and checks verification,
signature handling, body validation, limits, logging hygiene and the
durability of a mark across kill -9.
"""
import http.client
import json
import socket

import pytest

SECRET = "test-app-secret-42"
ACCOUNT = "dbid:AAB_acct_alice_0001"
# Python's default JSON spacing, as the real sender writes it.
BODY = (b'{"list_folder": {"accounts": ["dbid:AAB_acct_alice_0001"]}, '
        b'"delta": {"users": [1001]}}')
SIGNATURE = ("ad44cb5c1bd0364b49e137daf99d3e9d"
             "42fa4086f422d5e9af966797e8a69807")
MAX_BODY = 1024 * 1024
TIMEOUT_S = 10


@pytest.fixture
def app(app_factory):
    a = app_factory(SECRET, workers=0)
    # The receiver marks only accounts the app is linked to.
    a.set_token(ACCOUNT, "token-for-alice")
    return a


def request(app, method, path, body=None, headers=None):
    """One request on a fresh connection; returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", app.port,
                                      timeout=TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def notify(app, body, signature=None):
    headers = {"Content-Type": "application/json",
               "User-Agent": "DropboxWebhooks/1.0"}
    if signature is not None:
        headers["X-Dropbox-Signature"] = signature
    return request(app, "POST", "/webhook", body, headers)


def raw_exchange(app, data):
    """Sends bytes as they are and reads until the server closes."""
    with socket.create_connection(("127.0.0.1", app.port),
                                  timeout=TIMEOUT_S) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def pending_accounts(app):
    return {a["account"] for a in app.status()["accounts"] if a["pending"]}


def test_signed_notification_marks_account(app):
    assert len(BODY) == 87
    status, _, body = notify(app, BODY, SIGNATURE)
    assert (status, body) == (200, b"")
    assert pending_accounts(app) == {ACCOUNT}
    assert app.counter("notifications") == 1


def test_same_json_other_bytes_is_rejected(app):
    compact = json.dumps(json.loads(BODY), separators=(",", ":")).encode()
    assert compact != BODY
    status, _, body = notify(app, compact, SIGNATURE)
    assert status == 403
    assert SIGNATURE.encode() not in body
    assert pending_accounts(app) == set()
    assert app.counter("notifications") == 0


@pytest.mark.parametrize("signature", [None, "dummy", SIGNATURE.upper(),
                                       SIGNATURE[:-1], SIGNATURE + "0"])
def test_bad_signatures_get_403(app, signature):
    status, _, body = notify(app, BODY, signature)
    assert status == 403
    assert SIGNATURE.encode() not in body
    assert pending_accounts(app) == set()


def test_two_signature_headers_get_403(app):
    head = ("POST /webhook HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n"
            "Content-Type: application/json\r\n"
            f"X-Dropbox-Signature: {SIGNATURE}\r\n"
            f"X-Dropbox-Signature: {SIGNATURE}\r\n"
            f"Content-Length: {len(BODY)}\r\n"
            "Connection: close\r\n\r\n").encode()
    reply = raw_exchange(app, head + BODY)
    assert reply.startswith(b"HTTP/1.1 403"), reply[:100]
    assert SIGNATURE.encode() not in reply
    assert pending_accounts(app) == set()


def test_challenge_echoed_exactly(app):
    status, headers, body = request(app, "GET", "/webhook?challenge=3kX9-q_Z")
    assert (status, body) == (200, b"3kX9-q_Z")
    assert headers["Content-Type"] == "text/plain"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_challenge_is_percent_decoded_and_plain_text(app):
    status, headers, body = request(
        app, "GET", "/webhook?challenge=%3Cb%3Ehi%3C%2Fb%3E")
    assert (status, body) == (200, b"<b>hi</b>")
    assert headers["Content-Type"].split(";")[0] == "text/plain"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_missing_challenge_is_400(app):
    status, headers, _ = request(app, "GET", "/webhook")
    assert status == 400
    assert headers["Content-Type"].startswith("text/plain")


def test_other_methods_and_paths(app):
    status, headers, _ = request(app, "PUT", "/webhook", b"x")
    assert status == 405
    assert "GET" in headers["Allow"] and "POST" in headers["Allow"]
    status, _, _ = request(app, "GET", "/other?challenge=abc")
    assert status == 404


@pytest.mark.parametrize("body", [
    b"not json at all",
    b"[]",
    b'{"list_folder": {}}',
    b'{"list_folder": {"accounts": "dbid:abc"}}',
    b'{"list_folder": {"accounts": [42]}}',
    b'{"list_folder": {"accounts": ["alice"]}}',
    b'{"list_folder": {"accounts": ["dbid:a/b"]}}',
    b'{"list_folder": {"accounts": ["dbid:' + b"x" * 60 + b'"]}}',
])
def test_signed_but_malformed_is_400(app, body):
    import hashlib
    import hmac
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    status, _, _ = notify(app, body, sig)
    assert status == 400
    assert pending_accounts(app) == set()


def test_body_over_limit_is_413(app):
    body = b"x" * (MAX_BODY + 1)
    head = ("POST /webhook HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n"
            f"X-Dropbox-Signature: {SIGNATURE}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    # The server may answer before reading the body and close early.
    with socket.create_connection(("127.0.0.1", app.port),
                                  timeout=TIMEOUT_S) as s:
        s.sendall(head)
        try:
            s.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = b""
        try:
            while len(reply) < 12:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]


def test_body_at_limit_is_accepted_as_malformed(app):
    import hashlib
    import hmac
    body = b" " * MAX_BODY
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    status, _, _ = notify(app, body, sig)
    assert status == 400


def test_secret_never_logged(app):
    notify(app, BODY, SIGNATURE)
    notify(app, BODY, "dummy")
    request(app, "GET", "/webhook?challenge=abc")
    log = app.process.output()
    assert "accounts=1" in log
    assert SECRET not in log
    assert SIGNATURE not in log


def test_mark_survives_kill_9(app):
    status, _, _ = notify(app, BODY, SIGNATURE)
    assert status == 200
    app.process.kill9()
    app.start()
    assert pending_accounts(app) == {ACCOUNT}
