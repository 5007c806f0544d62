#!/usr/bin/env python3
"""Stands in for kube-apiserver on a lab node (tests/proxy_lab.rs).

The real API server cannot run on lab nodes (no kubelet, no control-plane images, no
cluster), and the apiserver proxy and the VIP only need what this does: listen where
kube-apiserver listens under metalk8s (the node's control-plane IP, port 6443: kubeadm's
`--bind-address` patch, never 0.0.0.0), serve TLS with the node's API server certificate,
and answer `GET /readyz` with 200, or 503 while the flag file exists, as a real API server
does when it shuts down or loses etcd. Every answer names the node, so a test sees which
API server a proxied request reached.

Usage: apiserver-stand-in.py ADDRESS PORT NODE CERT KEY UNREADY_FLAG
"""

import http.server
import os
import ssl
import sys

address, port, node, cert, key, unready_flag = sys.argv[1:]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path != "/readyz":
            self.answer(404, "not found")
        elif os.path.exists(unready_flag):
            self.answer(503, "unready")
        else:
            self.answer(200, "ok")

    def answer(self, status, word):
        body = f"{node} {word}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Stand-In-Node", node)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        # haproxy and keepalived check every 2 s: the journal would fill with nothing.
        pass


server = http.server.ThreadingHTTPServer((address, int(port)), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
# The handshake happens in the request's own thread, so one slow client never holds the
# listener.
server.socket = context.wrap_socket(
    server.socket, server_side=True, do_handshake_on_connect=False
)
server.serve_forever()
