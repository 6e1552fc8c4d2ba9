"""Smart-HTTP Git server for tend's tests, over `git http-backend`.

    python3 git_http.py ROOT PORT

Serves ROOT/<name>.git at http://127.0.0.1:PORT/<name>.git (fetch, shallow fetch, push,
protocol v2). PORT 0 picks a free port; the port is printed on the first line of stdout.
"""
import http.server
import os
import subprocess
import sys

ROOT = os.path.abspath(sys.argv[1])
PORT = int(sys.argv[2])


class Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def handle_git(self):
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = dict(
            os.environ,
            GIT_PROJECT_ROOT=ROOT,
            GIT_HTTP_EXPORT_ALL="1",
            REMOTE_USER="test",
            REMOTE_ADDR="127.0.0.1",
            REQUEST_METHOD=self.command,
            PATH_INFO=path,
            QUERY_STRING=query,
            CONTENT_TYPE=self.headers.get("Content-Type", ""),
            CONTENT_LENGTH=str(len(body)),
            GIT_PROTOCOL=self.headers.get("Git-Protocol", ""),
            HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""),
        )
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.split(b"\r\n"):
            key, _, value = line.decode().partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = handle_git

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Backend)
print(server.server_address[1], flush=True)
server.serve_forever()
