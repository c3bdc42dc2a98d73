"""A lean HTTP/1.1 connection pool on trio streams behind httpx2's transport interface.

Why it exists: through httpx2's default transport (httpcore2 → h11 → trio) a small request costs
about a millisecond of CPU, mostly pool bookkeeping, pure-Python parsing and two ``send`` calls.
Here responses are parsed by ``httptools`` (llhttp, in C), a request whose body is in memory
goes out in one ``send_all``, and the pool is a dict of LIFO stacks of idle connections, a set
of open ones and a FIFO of waiting tasks, all changed by plain (non-async) methods so no task
switch can leave it half-updated.

Shape: ``FastTransport.handle_async_request`` acquires a connection (idle for the same origin,
else a new slot, else waits in line for one), writes the request, reads until the response head
is parsed and returns an ``httpx2.Response`` whose stream is the ``Exchange``: the parser's
callback object for that response, which also yields the body as it is parsed. The connection
goes back to the pool the moment the body's last byte is parsed and keep-alive allows it;
anything else (an error, a cancellation, an early ``aclose``) closes it and frees its slot.

Outbound proxies: given an ``http://`` proxy, plain-HTTP requests go to it in absolute form
(``GET http://host:port/path``) with its ``Proxy-Authorization``; connections are pooled by the
target as ever. CONNECT tunnels (https through a proxy) are not opened here: the transport layer
gives those to httpx2's own pool.

Timeouts: each write and read of an exchange is bounded by the pool's timer, one system task per
pool that closes a connection whose read or write is overdue (``FastTransport.arm``); the
exchange turns the error that brings into its phase's timeout. A cancel scope per read would
cost more than the rest of a small request's way through the pool. Connecting and waiting in
line for a connection, which are rare, keep their cancel scopes.

A request goes again on a fresh connection only when it provably never left: a reused connection
found dead by the idle check or by the write of its first byte (plain TCP; over TLS a failed write
may have carried part of it). Once a byte has left, the server may have acted on the request, and
the error is raised for the caller's retry policy. When the rest of a request cannot be sent
because the server answered early and closed (a 413 to a large body), that answer is read and
returned (plain TCP; a broken TLS stream cannot be read).

An obsolete line fold in a response head (refused by llhttp) is made a space, as RFC 9112 §5.2
allows and h11 does: the head read so far is parsed again unfolded.

Not supported, on purpose: HTTP/2, CONNECT tunnels, ``Expect: 100-continue`` (the body is sent
at once), protocol upgrades (a 101 answer is returned and its connection closed), pipelining.

Modules: ``_pool`` (``FastTransport``: the pool and the transport interface), ``_exchange`` (one
request and its response: the head written, httptools' callbacks, the body stream) and
``_connection`` (a connection, how it is opened, and the table that turns trio's and the OS's
errors into httpx2's).
"""

from ._connection import Abortable, Owner, ResponseTooLarge
from ._exchange import MAX_HEAD
from ._pool import FastTransport

__all__ = ["MAX_HEAD", "Abortable", "FastTransport", "Owner", "ResponseTooLarge"]
