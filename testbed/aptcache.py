#!/usr/bin/env python3
"""A small caching HTTP proxy: the only way out of the test-bed guests.

Guests run with QEMU's user network in `restrict=on` mode, so they reach
nothing but what the tests give them.  A guestfwd maps 10.0.2.100:3142 in
each guest to this proxy: QEMU starts `aptcache.py stdio` for every
connection the guest opens, with the connection on stdin/stdout (a
chardev guestfwd would carry one connection only), and the guest's apt
uses it.  The
proxy forwards GET/HEAD requests only to the package archives of the
distributions we test (Debian, Ubuntu), and keeps every file under a
`pool/` path (immutable by name) in $TOA_CACHE/aptcache, so CI reruns and
later guests install packages without downloading them again.  Index files
(`dists/`) are always fetched fresh.

Requests for http://<anything>/toa-mirror/<path> are served from the
directory given by --mirror-dir (packages the tests publish for guests).

  aptcache.py stdio [--mirror-dir DIR]            (QEMU runs it per connection)
  aptcache.py serve --port N [--mirror-dir DIR]   (a listening proxy, for debugging)
"""

import argparse
import hashlib
import http.server
import os
import shutil
import socketserver
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

ALLOWED_HOSTS = {
    "deb.debian.org", "security.debian.org", "archive.ubuntu.com",
    "security.ubuntu.com", "ports.ubuntu.com",
}
CACHE = os.environ.get("TOA_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "toa-fleet")
STORE = os.path.join(CACHE, "aptcache")


def cache_path(url):
    u = urllib.parse.urlsplit(url)
    if "/pool/" not in u.path or u.query:
        return None
    name = os.path.basename(u.path)
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return os.path.join(STORE, u.hostname, "%s-%s" % (digest, name))


class Handler(http.server.BaseHTTPRequestHandler):
    # Keep-alive: apt sends many requests over one connection, and every
    # connection costs a process start in stdio mode.
    protocol_version = "HTTP/1.1"
    mirror_dir = None

    def log_message(self, fmt, *args):  # quiet by default; errors still go to stderr
        if os.environ.get("TOA_APTCACHE_VERBOSE"):
            sys.stderr.write("aptcache: " + fmt % args + "\n")

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head=False):
        url = self.path
        if not url.startswith("http://"):
            url = "http://%s%s" % (self.headers.get("Host", "localhost"), self.path)
        u = urllib.parse.urlsplit(url)
        if u.path.startswith("/toa-mirror/"):
            return self.serve_mirror(u.path[len("/toa-mirror/"):], head)
        if u.hostname not in ALLOWED_HOSTS:
            return self.send_error(403, "aptcache: %s is not a package archive the test bed allows"
                                   % u.hostname)
        cached = cache_path(url)
        if cached and os.path.exists(cached):
            return self.send_file(cached, head)
        try:
            req = urllib.request.Request(url, method="HEAD" if head else "GET")
            with urllib.request.urlopen(req, timeout=120) as resp:
                if head or not cached:
                    return self.relay(resp, head)
                os.makedirs(os.path.dirname(cached), exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(cached))
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(resp, out)
                os.replace(tmp, cached)
                return self.send_file(cached, head)
        except urllib.error.HTTPError as e:
            return self.send_error(e.code, str(e.reason))
        except Exception as e:  # noqa: BLE001 - report any upstream failure to apt
            return self.send_error(502, "aptcache: upstream failed: %s" % e)

    def relay(self, resp, head):
        # Index files are small: read them whole so the length is exact
        # (upstream may answer chunked) and the connection can be reused.
        body = b"" if head else resp.read()
        self.send_response(resp.status)
        for k in ("Content-Type", "Last-Modified", "ETag"):
            if resp.headers.get(k):
                self.send_header(k, resp.headers[k])
        self.send_header("Content-Length", resp.headers.get("Content-Length", "0") if head else str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_file(self, path, head):
        self.send_response(200)
        self.send_header("Content-Length", str(os.path.getsize(path)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if not head:
            with open(path, "rb") as f:
                shutil.copyfileobj(f, self.wfile)

    def serve_mirror(self, rel, head):
        if not self.mirror_dir:
            return self.send_error(404, "aptcache: no mirror directory configured")
        root = os.path.realpath(self.mirror_dir)
        path = os.path.realpath(os.path.join(root, urllib.parse.unquote(rel)))
        if not path.startswith(root + os.sep) or not os.path.isfile(path):
            return self.send_error(404, "aptcache: %s not in the mirror" % rel)
        return self.send_file(path, head)


class StdioHandler(Handler):
    """Serve the connection QEMU handed us on stdin/stdout."""

    def setup(self):
        self.rfile = sys.stdin.buffer
        self.wfile = sys.stdout.buffer

    def finish(self):
        self.wfile.flush()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mirror-dir")
    p = sub.add_parser("stdio")
    p.add_argument("--mirror-dir")
    args = ap.parse_args()
    Handler.mirror_dir = args.mirror_dir
    os.makedirs(STORE, exist_ok=True)
    if args.command == "serve":
        Server(("127.0.0.1", args.port), Handler).serve_forever()
    else:
        sys.stderr = open(os.path.join(CACHE, "aptcache.log"), "a")
        StdioHandler(None, ("guest", 0), None)


if __name__ == "__main__":
    main()
