"""Helpers shared by the black-box tests of the cloud's webhooks.

ScriptedHook is the one loopback webhook endpoint the tests build on: a
threaded HTTP server on 127.0.0.1 (a free port) that plays the app.  A
test file scripts it by subclassing, so each file keeps the recording
and the answers its assertions are written against; RecordingHook is
the plain one (echo every challenge, 200 to every POST, keep the JSON
bodies).  The functions below it drive a cloud (conftest.Cloud) through
the admin API and the raw file API.
"""
import http.server
import json
import signal
import threading
import time
import urllib.parse


class ScriptedHook:
    """A webhook endpoint on 127.0.0.1 whose answers a subclass scripts.

    Each request reaches the script as a dict: method, path (with the
    query), headers (a list of (name, value)), body (raw bytes; b"" for
    a GET) and start (time.monotonic() once its headers had arrived).
    answer_get(request, challenge) -> (status, text) answers the
    verification GET; the default echoes the challenge exactly.
    answer_post(request) -> (status, extra headers) answers a POST and
    may sleep to answer late; the default answers 200.

    Every answer is text/plain with a Content-Length.  An answer the
    cloud no longer waits for (it timed out and closed) is dropped.
    protocol is the handler's HTTP version: "HTTP/1.1" keeps
    connections open, "HTTP/1.0" closes each after its answer.  path is
    the one the URL names (the server answers any path).  The server
    runs until close(); `with` closes it too."""

    def __init__(self, protocol="HTTP/1.1", path="/hook"):
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = protocol

            def do_GET(self):
                query = urllib.parse.urlparse(self.path).query
                challenge = urllib.parse.parse_qs(query).get(
                    "challenge", [""])[0]
                status, text = hook.answer_get(self._request(b""),
                                               challenge)
                self._answer(status, text.encode(), {})

            def do_POST(self):
                start = time.monotonic()
                body = self.rfile.read(
                    int(self.headers.get("Content-Length", "0")))
                status, headers = hook.answer_post(
                    self._request(body, start))
                try:
                    self._answer(status, b"", headers)
                except OSError:
                    pass  # the cloud gave up waiting

            def _request(self, body, start=None):
                return {"method": self.command, "path": self.path,
                        "headers": list(self.headers.items()),
                        "body": body,
                        "start": time.monotonic() if start is None
                        else start}

            def _answer(self, status, body, headers):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}{path}"
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def answer_get(self, request, challenge):
        return 200, challenge

    def answer_post(self, request):
        return 200, {}

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RecordingHook(ScriptedHook):
    """Echoes every challenge, answers 200 to every POST and appends each
    POST's body, decoded from JSON, to .bodies (HTTP/1.0)."""

    def __init__(self, path="/hook"):
        self.bodies = []
        super().__init__(protocol="HTTP/1.0", path=path)

    def answer_post(self, request):
        self.bodies.append(json.loads(request["body"]))
        return 200, {}


def hook_factory(cls):
    """For a fixture: yields make(*args, **kwargs) -> cls(...), then
    closes every hook made."""
    started = []

    def make(*args, **kwargs):
        hook = cls(*args, **kwargs)
        started.append(hook)
        return hook
    yield make
    for hook in started:
        hook.close()


def make_cloud(cloud_factory, *args):
    """A cloud on a free port (raw calls need no fixed one)."""
    return cloud_factory(*args, port=0)


def upload(cloud, token, path):
    """Overwrites path with a few bytes through /2/files/upload."""
    status, _, data = cloud.post(
        "/2/files/upload", b"x" + path.encode(),
        {"Authorization": f"Bearer {token}",
         "Dropbox-API-Arg": json.dumps({"path": path, "mode": "overwrite"}),
         "Content-Type": "application/octet-stream"})
    assert status == 200, data


def register(cloud, app, hook):
    """Sets app's webhook to hook.url; it must verify."""
    result = cloud.admin("webhooks/set", {"app_key": app["app_key"],
                                          "uri": hook.url})
    assert result["state"] == "verified", result


def body_of(accounts):
    """The notification body naming accounts: what Python's json.dumps
    writes, as the real sender does."""
    return json.dumps({"list_folder": {"accounts":
                                       [a["account_id"] for a in accounts]},
                       "delta": {"users": [a["uid"] for a in accounts]}}
                      ).encode()


def deliveries(cloud, app):
    """The console's deliveries/list for app, newest first."""
    return cloud.admin("deliveries/list",
                       {"app_key": app["app_key"]})["deliveries"]


def app_entry(cloud, app):
    """app's row in the console's apps/list."""
    apps = cloud.admin("apps/list")["apps"]
    return next(a for a in apps if a["app_key"] == app["app_key"])


def restart_twice(cloud, quiet_s):
    """Restarts cloud after a kill -9, then after a clean stop, waiting
    quiet_s after each start (for what it might send again)."""
    cloud.stop(signal.SIGKILL)
    cloud.start()
    time.sleep(quiet_s)
    cloud.stop()
    cloud.start()
    time.sleep(quiet_s)
