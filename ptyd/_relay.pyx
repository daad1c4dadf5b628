# cython: language_level=3
# The compiled twin of _relay_py: same names, same behaviour, same frames (see its docstring).
#
# Ownership: each RelayCore owns its socket read buffer, its terminal read buffer and the buffer
# its input frames are built in, all allocated once, and the load file's descriptor when it
# spins. The poll, the reads, the frame checks and the writes run without the GIL; Python
# objects are made only for what run() hands back. Replies the daemon answers are awaited in
# fixed rings of deadlines, one per kind, in the object itself.

from cpython.bytes cimport PyBytes_AS_STRING
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcmp, memcpy, memmove
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

import os

from . import protocol

from ptyd._posix cimport POLLIN, c_poll, c_pread, c_read, c_write, pollfd, sched_yield

cdef enum Why:  # why run() returned (the values of _relay_py's constants)
    WHY_WAKE = 0
    WHY_KEYS = 1
    WHY_SOCKET = 2
    WHY_HELD = 3
    WHY_UNSENT = 4
    WHY_CLOSED = 5
    GOING_ON = -1  # a step's result: nothing for the caller yet

WAKE = WHY_WAKE
KEYS = WHY_KEYS
SOCKET = WHY_SOCKET
HELD = WHY_HELD
UNSENT = WHY_UNSENT
CLOSED = WHY_CLOSED
LOAD_PATH = "/proc/loadavg"
REPLY_WAIT_MS = 2000

cdef enum:
    READ_SIZE = 65536
    SOCKET_READ_SIZE = 262144
    HEADER_SIZE = 4
    OFFSET_FIELD = 9  # 0xcf + 8-byte offset
    DATA_FIELD = 10  # fixstr "data" (5 bytes) + 0xc6 + 4-byte length
    EXPECTED_MAX = 64  # room for an ok answer's frame
    LOAD_READ_SIZE = 128  # /proc/loadavg is one short line
    MAX_AWAITED = 32  # replies awaited of each kind; a further query forgets the oldest
    MAX_PARAMS = 32  # parameter bytes of a query or reply the relay recognises
    BIG_PARAM = 100000  # a parameter's value stops growing here (only 0, 5 and 6 matter)
    ESC = 0x1B

cdef enum Kind:  # of a query the daemon answers and of its reply (as _relay_py's constants)
    DA1 = 0
    DA2 = 1
    DSR = 2
    CPR = 3
    DECXCPR = 4
    KINDS = 5
    NOT_ONE = -1


# A CSI sequence of the simple form queries and replies take: ESC [, a marker ('?' or '>'),
# up to MAX_PARAMS digits and ';', a final byte.
cdef struct Csi:
    Py_ssize_t size  # 0: not one (or cut off by the end of the read)
    unsigned char marker  # 0: none
    unsigned char final
    int first  # the first parameter's value, 0 when empty
    int params  # how many (1 + the semicolons)
    bint has_empty  # a parameter with no digits


cdef inline void put_be(unsigned char* dst, unsigned long long value, int width) noexcept nogil:
    cdef int i
    for i in range(width):
        dst[width - 1 - i] = <unsigned char>(value >> (8 * i))


cdef inline unsigned long long get_be(const unsigned char* src, int width) noexcept nogil:
    cdef unsigned long long value = 0
    cdef int i
    for i in range(width):
        value = (value << 8) | src[i]
    return value


# An unsigned integer in msgpack's shortest form, as the daemon's encoder writes it.
cdef Py_ssize_t pack_uint(unsigned char* dst, unsigned long long value) noexcept nogil:
    if value < 0x80:
        dst[0] = <unsigned char>value
        return 1
    if value < 0x100:
        dst[0] = 0xCC
        dst[1] = <unsigned char>value
        return 2
    if value < 0x10000:
        dst[0] = 0xCD
        put_be(dst + 1, value, 2)
        return 3
    if (value >> 32) == 0:
        dst[0] = 0xCE
        put_be(dst + 1, value, 4)
        return 5
    dst[0] = 0xCF
    put_be(dst + 1, value, 8)
    return 9


cdef inline long long monotonic_ns() noexcept nogil:
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec * 1000000000LL + now.tv_nsec


# The runnable tasks in a /proc/loadavg line ("0.79 0.86 0.98 2/81 12919"): the number
# before the slash; -1 if there is none.
cdef int parse_runnable(const unsigned char* text, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t slash = 0, first
    cdef int count = 0
    while slash < size and text[slash] != c'/':
        slash += 1
    first = slash
    while first > 0 and c'0' <= text[first - 1] <= c'9':
        first -= 1
    if slash == size or first == slash or slash - first > 9:
        return -1
    while first < slash:
        count = count * 10 + (text[first] - c'0')
        first += 1
    return count


# The simple CSI sequence at text[0], an ESC (the same grammar as _relay_py's _CSI).
cdef Csi scan_csi(const unsigned char* text, Py_ssize_t size) noexcept nogil:
    cdef Csi csi
    cdef Py_ssize_t at = 2, end
    cdef bint in_first = True, is_empty = True
    cdef unsigned char c
    csi.size = 0
    csi.marker = 0
    csi.final = 0
    csi.first = 0
    csi.params = 1
    csi.has_empty = False
    if size < 3 or text[1] != c'[':
        return csi
    if text[2] == c'?' or text[2] == c'>':
        csi.marker = text[2]
        at = 3
    end = at + MAX_PARAMS
    while at < size and at <= end:
        c = text[at]
        if c'0' <= c <= c'9' and at < end:
            is_empty = False
            if in_first and csi.first < BIG_PARAM:
                csi.first = csi.first * 10 + (c - c'0')
        elif c == c';' and at < end:
            csi.has_empty = csi.has_empty or is_empty
            is_empty = True
            in_first = False
            csi.params += 1
        elif 0x40 <= c <= 0x7E:
            csi.has_empty = csi.has_empty or is_empty
            csi.final = c
            csi.size = at + 1
            return csi
        else:
            return csi
        at += 1
    return csi


# The kind of query the daemon's emulator answers that csi is (its first parameter decides,
# as there), or NOT_ONE.
cdef int query_kind(const Csi* csi) noexcept nogil:
    if csi.final == c'c' and csi.first == 0 and csi.marker != c'?':
        return DA1 if csi.marker == 0 else DA2
    if csi.final == c'n' and csi.marker == 0 and (csi.first == 5 or csi.first == 6):
        return DSR if csi.first == 5 else CPR
    if csi.final == c'n' and csi.marker == c'?' and csi.first == 6:
        return DECXCPR
    return NOT_ONE


# The kind of reply csi is shaped as (every parameter given), or NOT_ONE (see _relay_py).
cdef int reply_kind(const Csi* csi) noexcept nogil:
    if csi.has_empty:
        return NOT_ONE
    if csi.final == c'c' and csi.marker != 0:
        return DA1 if csi.marker == c'?' else DA2
    if csi.final == c'n' and csi.marker == 0 and csi.params == 1:
        return DSR
    if csi.final == c'R' and csi.marker == 0 and csi.params == 2:
        return CPR
    if csi.final == c'R' and csi.marker == c'?' and (csi.params == 2 or csi.params == 3):
        return DECXCPR
    return NOT_ONE


def runnable_tasks(const unsigned char[::1] text):
    """The runnable tasks a /proc/loadavg line counts; -1 if it counts none."""
    return parse_runnable(&text[0] if text.shape[0] else NULL, text.shape[0])


cdef class RelayCore:
    """One attachment's quiet loop (see _relay_py)."""

    cdef readonly int fd_in
    cdef readonly int fd_out
    cdef readonly int sock_fd
    cdef readonly int wake_fd
    cdef readonly bytes output_prefix
    cdef readonly object layout
    cdef readonly int detach_key
    cdef public unsigned long long next_id
    cdef public unsigned long long input_request
    cdef bytes ok_head  # kept alive for the pointers below
    cdef bytes ok_tail
    cdef bytes data_key
    cdef const unsigned char* ok_head_p
    cdef const unsigned char* ok_tail_p
    cdef const unsigned char* prefix_p
    cdef const unsigned char* data_key_p
    cdef Py_ssize_t ok_head_size
    cdef Py_ssize_t ok_tail_size
    cdef Py_ssize_t prefix_size
    cdef unsigned char* sock_buf
    cdef unsigned char* key_buf
    cdef unsigned char* frame_buf
    cdef Py_ssize_t frame_fixed  # bytes of an input frame besides its data
    cdef Py_ssize_t head_size
    cdef unsigned char expected_ok[EXPECTED_MAX]
    cdef Py_ssize_t expected_size
    cdef readonly long long spin_ns
    cdef int load_fd  # /proc/loadavg, when has_load_fd
    cdef bint has_load_fd  # False: never spin (fields start zeroed, so a failed init owns none)
    cdef int cpus
    cdef long long spin_until  # CLOCK_MONOTONIC ns; 0: not spinning
    cdef readonly bint filters_replies
    cdef readonly long long reply_wait_ns
    # The deadlines (CLOCK_MONOTONIC ns) of the replies awaited: a ring of MAX_AWAITED per
    # kind, its oldest at awaited_head[kind], awaited_count[kind] long.
    cdef long long awaited[KINDS * MAX_AWAITED]
    cdef int awaited_head[KINDS]
    cdef int awaited_count[KINDS]
    cdef int awaited_total

    def __cinit__(
        self, int fd_in, int fd_out, int sock_fd, int wake_fd, unsigned long long session_id,
        int detach_key, long long spin_us=0, str load_path=LOAD_PATH,
        bint filters_replies=True, long long reply_wait_ms=REPLY_WAIT_MS,
    ):
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.sock_fd = sock_fd
        self.wake_fd = wake_fd
        self.output_prefix = protocol.output_frame_prefix(session_id)
        self.layout = protocol.input_layout(session_id)
        self.detach_key = detach_key
        self.next_id = 1
        self.input_request = 0
        self.ok_head = self.layout.ok_head
        self.ok_tail = self.layout.ok_tail
        self.data_key = protocol.OUTPUT_DATA_KEY
        self.ok_head_p = <const unsigned char*>PyBytes_AS_STRING(self.ok_head)
        self.ok_tail_p = <const unsigned char*>PyBytes_AS_STRING(self.ok_tail)
        self.prefix_p = <const unsigned char*>PyBytes_AS_STRING(self.output_prefix)
        self.data_key_p = <const unsigned char*>PyBytes_AS_STRING(self.data_key)
        self.ok_head_size = len(self.ok_head)
        self.ok_tail_size = len(self.ok_tail)
        self.prefix_size = len(self.output_prefix)
        if len(self.data_key) + 5 != DATA_FIELD:
            raise ValueError("the output frame's data key is not the expected layout")
        if HEADER_SIZE + len(self.ok_head) + 9 + len(self.ok_tail) > EXPECTED_MAX:
            raise ValueError("the ok answer's layout is longer than expected")
        cdef bytes head = self.layout.head
        cdef bytes middle = self.layout.middle
        self.head_size = len(head)
        self.frame_fixed = HEADER_SIZE + len(head) + 5 + len(middle) + 5
        self.sock_buf = <unsigned char*>malloc(SOCKET_READ_SIZE)
        self.key_buf = <unsigned char*>malloc(READ_SIZE)
        self.frame_buf = <unsigned char*>malloc(self.frame_fixed + READ_SIZE)
        if self.sock_buf == NULL or self.key_buf == NULL or self.frame_buf == NULL:
            raise MemoryError()
        # The constant parts of every input frame, written once.
        memcpy(self.frame_buf + HEADER_SIZE, PyBytes_AS_STRING(head), len(head))
        cdef Py_ssize_t at = HEADER_SIZE + len(head)
        self.frame_buf[at] = 0xCE
        memcpy(self.frame_buf + at + 5, PyBytes_AS_STRING(middle), len(middle))
        self.frame_buf[self.frame_fixed - 5] = 0xC6
        self.filters_replies = filters_replies
        self.reply_wait_ns = reply_wait_ms * 1000000 if reply_wait_ms > 0 else 0
        self.spin_ns = spin_us * 1000 if spin_us > 0 else 0
        self.cpus = len(os.sched_getaffinity(0)) or 1  # the CPUs this process may run on
        self.spin_until = 0
        if self.spin_ns:
            try:
                self.load_fd = os.open(load_path, os.O_RDONLY | os.O_CLOEXEC)
                self.has_load_fd = True
            except OSError:
                pass  # no load figure: spinning could steal a busy core, so never spin

    def __dealloc__(self):
        if self.has_load_fd:
            os.close(self.load_fd)
        free(self.sock_buf)
        free(self.key_buf)
        free(self.frame_buf)

    cdef void set_expected(self, unsigned long long request_id) noexcept nogil:
        cdef unsigned char* dst = self.expected_ok
        cdef Py_ssize_t at = HEADER_SIZE
        memcpy(dst + at, self.ok_head_p, self.ok_head_size)
        at += self.ok_head_size
        at += pack_uint(dst + at, request_id)
        memcpy(dst + at, self.ok_tail_p, self.ok_tail_size)
        self.expected_size = at + self.ok_tail_size
        put_be(dst, self.expected_size - HEADER_SIZE, HEADER_SIZE)

    def run(self, bint read_keys, bint send_keys, unsigned long long skip_before):
        """Relay until the caller is needed; (why, data, rest) as in _relay_py."""
        cdef pollfd fds[3]
        cdef int nfds = 3 if read_keys else 2
        cdef int ready
        cdef int why = GOING_ON
        cdef Py_ssize_t got = 0, at = 0, held_at = 0, held_end = 0
        if self.input_request:
            self.set_expected(self.input_request)
        fds[0].fd = self.wake_fd
        fds[1].fd = self.sock_fd
        fds[2].fd = self.fd_in
        fds[0].events = fds[1].events = fds[2].events = POLLIN
        while why == GOING_ON:
            with nogil:
                ready = c_poll(fds, nfds, 0 if self.is_spinning() else -1)
                if ready == 0:
                    sched_yield()  # whatever else wants this core runs first
            if ready == 0:
                continue
            if ready < 0:
                if errno == EINTR:
                    continue  # a signal: its byte is on the wake-up fd, seen by the next poll
                raise OSError(errno, "poll failed")
            if fds[0].revents:
                return WHY_WAKE, b"", b""
            if fds[1].revents:
                with nogil:
                    why = self.from_socket(skip_before, &got, &at, &held_at, &held_end)
                if why == WHY_HELD:
                    return (
                        WHY_HELD,
                        self.sock_buf[held_at:held_end],
                        self.sock_buf[at:got],
                    )
                if why != GOING_ON:
                    return why, b"", self.sock_buf[at:got]
            if nfds == 3 and fds[2].revents:
                with nogil:
                    why = self.from_terminal(send_keys, &got, &at)
                if why == WHY_KEYS:
                    return WHY_KEYS, self.key_buf[:got], b""
                if why == WHY_UNSENT:
                    return WHY_UNSENT, self.frame_buf[at:got], b""
        return why, b"", b""

    # Sent keys start a spin when a core is idle: see _relay_py.
    cdef void start_spin(self) noexcept nogil:
        cdef unsigned char text[LOAD_READ_SIZE]
        cdef ssize_t size
        cdef int runnable
        if not self.has_load_fd:
            return
        size = c_pread(self.load_fd, text, LOAD_READ_SIZE, 0)
        runnable = parse_runnable(text, size) if size > 0 else -1
        if 0 <= runnable <= self.cpus:
            self.spin_until = monotonic_ns() + self.spin_ns

    cdef bint is_spinning(self) noexcept nogil:
        if self.spin_until and monotonic_ns() >= self.spin_until:
            self.spin_until = 0
        return self.spin_until != 0

    # One read of the socket: every complete frame that is the answer to the input in flight or
    # output of this session at or after skip_before is handled; the first other one stops.
    cdef int from_socket(
        self, unsigned long long skip_before, Py_ssize_t* got_out, Py_ssize_t* at_out,
        Py_ssize_t* held_at, Py_ssize_t* held_end
    ) noexcept nogil:
        cdef ssize_t got = c_read(self.sock_fd, self.sock_buf, SOCKET_READ_SIZE)
        cdef Py_ssize_t at = 0, end, length, data_at, data_size
        cdef Py_ssize_t prefix_size = self.prefix_size
        cdef ssize_t written
        cdef const unsigned char* body
        got_out[0] = 0
        at_out[0] = 0
        if got < 0 and errno == EAGAIN:
            return GOING_ON
        if got <= 0:
            return WHY_CLOSED
        got_out[0] = got
        while at < got:
            at_out[0] = at
            if got - at < HEADER_SIZE:
                return WHY_SOCKET
            length = <Py_ssize_t>get_be(self.sock_buf + at, HEADER_SIZE)
            end = at + HEADER_SIZE + length
            if end > got:
                return WHY_SOCKET
            body = self.sock_buf + at + HEADER_SIZE
            if (
                self.input_request
                and end - at == self.expected_size
                and memcmp(self.sock_buf + at, self.expected_ok, self.expected_size) == 0
            ):
                self.input_request = 0
                at = end
                continue
            data_at = prefix_size + OFFSET_FIELD + DATA_FIELD
            if (
                length < data_at
                or memcmp(body, self.prefix_p, prefix_size) != 0
                or body[prefix_size] != 0xCF
                or body[data_at - 5] != 0xC6
                or get_be(body + prefix_size + 1, 8) < skip_before
            ):
                return WHY_SOCKET
            data_size = <Py_ssize_t>get_be(body + data_at - 4, 4)
            if data_size != length - data_at or memcmp(
                body + prefix_size + OFFSET_FIELD, self.data_key_p, DATA_FIELD - 5
            ) != 0:
                return WHY_SOCKET
            at = end
            at_out[0] = at
            self.spin_until = 0  # the output the keys were waiting for is here
            self.expect_c(body + data_at, data_size)
            written = c_write(self.fd_out, body + data_at, data_size)
            if written < data_size:
                if written < 0:
                    written = 0  # EAGAIN, or an error the caller's own write reports
                held_at[0] = (body + data_at + written) - self.sock_buf
                held_end[0] = end
                return WHY_HELD
        at_out[0] = at
        return GOING_ON

    # One read of the terminal: sent as one input request when nothing needs the caller.
    cdef int from_terminal(self, bint send_keys, Py_ssize_t* got_out,
                           Py_ssize_t* at_out) noexcept nogil:
        cdef ssize_t got = c_read(self.fd_in, self.key_buf, READ_SIZE)
        cdef ssize_t sent
        cdef Py_ssize_t size
        cdef unsigned long long request_id
        got_out[0] = 0
        if got < 0 and errno == EAGAIN:
            return GOING_ON
        if got <= 0:
            return WHY_KEYS  # end of input, or EIO: the terminal hung up
        if self.awaited_total:
            got = self.drop_c(self.key_buf, got)
            if got == 0:
                return GOING_ON  # only replies: nothing to send
        got_out[0] = got
        if (
            not send_keys
            or self.input_request
            or (self.detach_key >= 0 and memchr(self.key_buf, self.detach_key, got) != NULL)
        ):
            return WHY_KEYS
        request_id = self.next_id
        self.next_id += 1
        self.input_request = request_id
        self.set_expected(request_id)
        size = self.frame_fixed + got
        put_be(self.frame_buf, size - HEADER_SIZE, HEADER_SIZE)
        put_be(self.frame_buf + HEADER_SIZE + self.head_size + 1, request_id, 4)
        put_be(self.frame_buf + self.frame_fixed - 4, got, 4)
        memcpy(self.frame_buf + self.frame_fixed, self.key_buf, got)
        sent = c_write(self.sock_fd, self.frame_buf, size)
        if sent < size:
            at_out[0] = sent if sent > 0 else 0
            got_out[0] = size
            return WHY_UNSENT
        self.start_spin()
        return GOING_ON

    # -- replies the terminal sends to queries the daemon answers (see _relay_py) -------------

    def expect_replies(self, const unsigned char[::1] output not None):
        """Await the terminal's reply to each query the daemon answers in ``output``."""
        if output.shape[0]:
            self.expect_c(&output[0], output.shape[0])

    def drop_replies(self, bytes keys not None):
        """``keys`` without the awaited replies in them (each one awaited no more)."""
        cdef bytearray kept
        cdef unsigned char[::1] view
        cdef Py_ssize_t size
        size = len(keys)
        if not self.awaited_total or memchr(PyBytes_AS_STRING(keys), ESC, size) == NULL:
            return keys
        kept = bytearray(keys)
        view = kept
        size = self.drop_c(&view[0], size)
        if size == len(keys):
            return keys
        return bytes(kept[:size])

    # Each query the daemon answers in output (being written to the terminal) awaits a reply.
    cdef void expect_c(self, const unsigned char* output, Py_ssize_t size) noexcept nogil:
        cdef const unsigned char* at = output
        cdef const unsigned char* end = output + size
        cdef Csi csi
        cdef int kind
        cdef long long now = 0
        if not self.filters_replies:
            return
        while True:
            at = <const unsigned char*>memchr(at, ESC, end - at)
            if at == NULL:
                return
            csi = scan_csi(at, end - at)
            if csi.size == 0:
                at += 1
                continue
            at += csi.size
            kind = query_kind(&csi)
            if kind != NOT_ONE:
                if now == 0:
                    now = monotonic_ns()
                self.await_reply(kind, now + self.reply_wait_ns)

    cdef void await_reply(self, int kind, long long deadline) noexcept nogil:
        cdef int* count = &self.awaited_count[kind]
        cdef int* head = &self.awaited_head[kind]
        if count[0] == MAX_AWAITED:  # the oldest is forgotten
            head[0] = (head[0] + 1) % MAX_AWAITED
            count[0] -= 1
            self.awaited_total -= 1
        self.awaited[kind * MAX_AWAITED + (head[0] + count[0]) % MAX_AWAITED] = deadline
        count[0] += 1
        self.awaited_total += 1

    # Whether a reply of this kind is awaited (then no more); expired ones are forgotten.
    cdef bint take_awaited(self, int kind, long long now) noexcept nogil:
        cdef int* count = &self.awaited_count[kind]
        cdef int* head = &self.awaited_head[kind]
        cdef bint is_awaited = False
        while count[0] and not is_awaited:
            is_awaited = self.awaited[kind * MAX_AWAITED + head[0]] > now
            head[0] = (head[0] + 1) % MAX_AWAITED
            count[0] -= 1
            self.awaited_total -= 1
        return is_awaited

    # Removes the awaited replies from keys, in place; the size left.
    cdef Py_ssize_t drop_c(self, unsigned char* keys, Py_ssize_t size) noexcept nogil:
        cdef Py_ssize_t scan = 0, start = 0, kept = 0, esc
        cdef const unsigned char* found
        cdef Csi csi
        cdef int kind
        cdef long long now
        now = monotonic_ns()
        while scan < size:
            found = <const unsigned char*>memchr(keys + scan, ESC, size - scan)
            if found == NULL:
                break
            esc = found - keys
            csi = scan_csi(keys + esc, size - esc)
            kind = reply_kind(&csi) if csi.size else NOT_ONE
            if kind == NOT_ONE or not self.take_awaited(kind, now):
                scan = esc + (csi.size if csi.size else 1)
                continue
            memmove(keys + kept, keys + start, esc - start)  # the keys before this reply stay
            kept += esc - start
            start = scan = esc + csi.size
        memmove(keys + kept, keys + start, size - start)
        return kept + size - start
