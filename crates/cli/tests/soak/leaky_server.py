"""An uppercase-echo server in lines framing that leaks on purpose: it keeps a
duplicate of every Nth connection's descriptor forever, as a server that forgets
to close on one error path would. `socklab soak --attach` must catch it.

Usage: python3 leaky_server.py N   (prints its port, then serves until killed)
"""
import os
import socket
import sys
import threading

LEAK_EVERY = int(sys.argv[1])


def serve(conn):
    pending = b""
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            pending += data
            *lines, pending = pending.split(b"\n")
            if lines:
                # bytes.upper() changes a-z only, as the protocol says.
                conn.sendall(b"".join(line.upper() + b"\n" for line in lines))
    except OSError:
        pass
    finally:
        conn.close()


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    print(listener.getsockname()[1], flush=True)
    leaked = []
    accepted = 0
    while True:
        conn, _ = listener.accept()
        accepted += 1
        if accepted % LEAK_EVERY == 0:
            leaked.append(os.dup(conn.fileno()))
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()
