"""A TCP proxy on a free 127.0.0.1 port for tests that need one connection to misbehave while the
others work: stall one connection (its bytes stop flowing both ways; it stays open), cut one (both
its sockets closed, whatever was in flight lost) and refuse new ones (each is accepted and closed
at once). One thread relays everything; close() stops it and closes every socket."""

import selectors
import socket
import threading


class Proxy:
    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs = {}  # upstream local port -> (client socket, upstream socket)
        self.stalled = set()  # upstream local ports
        self.to_cut = set()  # upstream local ports, closed by the relaying thread
        self.refusing = False
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.running = True
        self.wake_r, self.wake_w = socket.socketpair()
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def upstream_ports(self):
        """The local ports of the proxy's connections to the target (Redis's CLIENT LIST shows
        them as each client's addr)."""
        with self.lock:
            return set(self.pairs)

    def stall(self, upstream_port):
        """Stops relaying the connection whose upstream local port this is, both ways."""
        with self.lock:
            self.stalled.add(upstream_port)
        self.wake_w.send(b"x")

    def cut(self, upstream_port):
        """Closes both sockets of the connection whose upstream local port this is (stalled or
        not): the client sees its connection end, Redis its client go."""
        with self.lock:
            self.to_cut.add(upstream_port)
        self.wake_w.send(b"x")

    def cut_stalled(self):
        """Cuts every stalled connection."""
        with self.lock:
            self.to_cut |= self.stalled
        self.wake_w.send(b"x")

    def refuse_new(self, refuse=True):
        with self.lock:
            self.refusing = refuse

    def close(self):
        self.running = False
        self.wake_w.send(b"x")
        self.thread.join(5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()
        self.wake_w.close()
        with self.lock:
            for c, u in self.pairs.values():
                c.close()
                u.close()
            self.pairs.clear()

    def _accept(self):
        try:
            c, _ = self.listener.accept()
        except BlockingIOError:
            return
        with self.lock:
            refusing = self.refusing
        if refusing:
            c.close()
            return
        try:
            u = socket.create_connection(self.target, timeout=5)
        except OSError:
            c.close()
            return
        c.setblocking(False)
        u.setblocking(False)
        port = u.getsockname()[1]
        with self.lock:
            self.pairs[port] = (c, u)
        self.sel.register(c, selectors.EVENT_READ, (port, c, u))
        self.sel.register(u, selectors.EVENT_READ, (port, u, c))

    def _drop(self, port):
        with self.lock:
            pair = self.pairs.pop(port, None)
            self.stalled.discard(port)
        if pair:
            for s in pair:
                try:
                    self.sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()

    def _run(self):
        while self.running:
            for key, _ in self.sel.select(0.5):
                if key.data is None:
                    self._accept()
                    continue
                if key.data == "wake":
                    self.wake_r.recv(4096)
                    with self.lock:
                        to_cut, self.to_cut = self.to_cut, set()
                        self.stalled -= to_cut
                    for port in to_cut:
                        self._drop(port)
                    with self.lock:
                        stalled = set(self.stalled)
                    for port in stalled:  # stop watching them: their bytes wait in the kernel
                        with self.lock:
                            pair = self.pairs.get(port)
                        for s in pair or ():
                            try:
                                self.sel.unregister(s)
                            except (KeyError, ValueError):
                                pass
                    continue
                port, src, dst = key.data
                with self.lock:
                    if port in self.stalled:  # stalled earlier in this same batch of events
                        continue
                try:
                    data = src.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._drop(port)
                    continue
                try:
                    dst.setblocking(True)
                    dst.sendall(data)
                    dst.setblocking(False)
                except OSError:
                    self._drop(port)
