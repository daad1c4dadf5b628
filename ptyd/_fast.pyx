# cython: language_level=3
# The compiled twin of _fast_py: same names, same behaviour, same frames.
#
# Ownership: each OutputPump owns one read buffer (allocated once, reused for every batch) and
# its ReplayRing owns one circular buffer; neither is ever exported as a view. Frames are
# immutable bytes shared by every subscriber: each subscriber keeps a count, never a copy.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cdef extern from "unistd.h" nogil:
    ssize_t c_read "read"(int fd, void* buf, size_t count)

NORMAL = NORMAL_LEVEL
WARNING = WARNING_LEVEL
LIMIT = LIMIT_LEVEL
RESYNC = RESYNC_POLICY
DISCONNECT = DISCONNECT_POLICY
BLOCK = BLOCK_POLICY

cdef enum:
    READ_SIZE = 65536
    OFFSET_FIELD = 9  # 0xcf + 8-byte offset
    DATA_FIELD = 10  # fixstr "data" (5 bytes) + 0xc6 + 4-byte length


cdef class Subscriber:
    """One client attached to one session, as the hot path sees it (see _fast_py)."""

    def __init__(self, transport, int policy, Py_ssize_t threshold, Py_ssize_t limit, owner):
        self.transport = transport
        self.policy = policy
        self.threshold = threshold
        self.limit = limit
        self.owner = owner
        self.level = NORMAL_LEVEL
        self.is_live = False
        self.is_lagging = False
        self.held = []
        self.held_bytes = 0
        self.bytes_delivered = 0
        self.warnings = 0
        self.resyncs = 0

    cpdef Py_ssize_t backlog(self) except -1:
        return self.transport.get_write_buffer_size() + self.held_bytes

    cpdef bint update_level(self) except -1:
        cdef Py_ssize_t backlog = self.backlog()
        cdef int level
        if self.is_lagging or backlog >= self.limit:
            level = LIMIT_LEVEL
        elif backlog >= self.threshold:
            level = WARNING_LEVEL
        else:
            level = NORMAL_LEVEL
        if level == self.level:
            return False
        if self.level == NORMAL_LEVEL:
            self.warnings += 1  # a jump straight to the limit is warned too
        self.level = level
        return True

    def take_held(self):
        held = self.held
        self.held = []
        self.held_bytes = 0
        self.is_live = True
        return held

    cpdef void start_lagging(self) noexcept:
        self.is_lagging = True
        self.is_live = False
        self.held = []
        self.held_bytes = 0
        self.resyncs += 1


cdef class ReplayRing:
    """The last ``capacity`` bytes of a session's output, addressed by stream offset."""

    def __cinit__(self, Py_ssize_t capacity):
        self.capacity = capacity
        self.buf = <unsigned char*>malloc(capacity if capacity > 0 else 1)
        if self.buf == NULL:
            raise MemoryError()
        self.used = 0
        self.head = 0
        self.end = 0

    def __dealloc__(self):
        free(self.buf)

    # Copy the tail of data into the circular buffer (at most capacity bytes).
    cdef void append_c(self, const unsigned char* data, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t cap = self.capacity, tail, first
        self.end += n
        if cap == 0:
            return
        if n >= cap:
            memcpy(self.buf, data + n - cap, cap)
            self.head = 0
            self.used = cap
            return
        tail = (self.head + self.used) % cap
        first = min(n, cap - tail)
        memcpy(self.buf + tail, data, first)
        memcpy(self.buf, data + first, n - first)
        if self.used + n > cap:
            self.head = (self.head + self.used + n - cap) % cap
            self.used = cap
        else:
            self.used += n

    def append(self, const unsigned char[::1] data):
        self.append_c(&data[0] if data.shape[0] else NULL, data.shape[0])

    @property
    def start(self):
        return self.end - self.used

    def since(self, unsigned long long offset):
        """Exactly the bytes from ``offset`` to the end, or None if they are no longer held."""
        if offset > self.end or offset < self.end - self.used:
            return None
        cdef Py_ssize_t n = self.end - offset
        cdef Py_ssize_t cap = self.capacity, begin, first
        out = PyBytes_FromStringAndSize(NULL, n)
        cdef unsigned char* dst = <unsigned char*>PyBytes_AS_STRING(out)
        if n:
            begin = (self.head + self.used - n) % cap
            first = min(n, cap - begin)
            memcpy(dst, self.buf + begin, first)
            memcpy(dst + first, self.buf, n - first)
        return out


cdef class OutputPump:
    """Reads one session's PTY and fans each batch out to its subscribers as one shared frame."""

    def __cinit__(self, int fd, bytes frame_prefix, Py_ssize_t ring_capacity, Py_ssize_t read_budget):
        self.fd = fd
        self.frame_prefix = frame_prefix
        self.ring = ReplayRing(ring_capacity)
        self.read_budget = read_budget
        self.subscribers = []
        self.buf = <unsigned char*>malloc(read_budget)
        if self.buf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.buf)

    @property
    def offset(self):
        return self.ring.end

    def pump(self):
        """Read until EAGAIN, end of file or the byte budget; frame the batch once and offer it
        to every subscriber. Returns (data, is_eof, subscribers whose level changed)."""
        cdef Py_ssize_t total = 0, want
        cdef ssize_t got
        cdef bint is_eof = False
        while total < self.read_budget:
            want = min(<Py_ssize_t>READ_SIZE, self.read_budget - total)
            got = c_read(self.fd, self.buf + total, want)
            if got > 0:
                total += got
                continue
            if got == 0:
                is_eof = True
            elif errno == EINTR:
                continue
            elif errno != EAGAIN:  # EWOULDBLOCK == EAGAIN on Linux
                is_eof = True  # EIO: every slave descriptor is closed
            break
        if total == 0:
            return b"", is_eof, []
        data = PyBytes_FromStringAndSize(<char*>self.buf, total)
        return data, is_eof, self._publish(self.buf, total)

    def publish(self, const unsigned char[::1] data):
        """Append data to the stream: ring, one frame, try-put to each subscriber."""
        return self._publish(&data[0] if data.shape[0] else NULL, data.shape[0])

    cdef list _publish(self, const unsigned char* data, Py_ssize_t n):
        frame = _encode_output(self.frame_prefix, self.ring.end, data, n)
        self.ring.append_c(data, n)
        return fan_out(self.subscribers, frame)


cdef inline void _put_be(unsigned char* dst, unsigned long long value, int width) noexcept nogil:
    cdef int i
    for i in range(width):
        dst[width - 1 - i] = <unsigned char>(value >> (8 * i))


cdef bytes _encode_output(bytes prefix, unsigned long long offset, const unsigned char* data, Py_ssize_t n):
    cdef Py_ssize_t plen = len(prefix)
    cdef Py_ssize_t body = plen + OFFSET_FIELD + DATA_FIELD + n
    frame = PyBytes_FromStringAndSize(NULL, 4 + body)
    cdef unsigned char* out = <unsigned char*>PyBytes_AS_STRING(frame)
    _put_be(out, body, 4)
    out += 4
    memcpy(out, PyBytes_AS_STRING(prefix), plen)
    out += plen
    out[0] = 0xcf
    _put_be(out + 1, offset, 8)
    out += OFFSET_FIELD
    memcpy(out, b"\xa4data\xc6", 6)
    _put_be(out + 6, n, 4)
    out += DATA_FIELD
    if n:
        memcpy(out, data, n)
    return frame


def encode_output(bytes prefix, unsigned long long offset, const unsigned char[::1] data):
    """The complete output frame; layout defined by protocol.output_frame_prefix."""
    return _encode_output(prefix, offset, &data[0] if data.shape[0] else NULL, data.shape[0])


cpdef list fan_out(list subscribers, bytes frame):
    """Offer one shared frame to every subscriber (try-put against its limit); return those
    whose level changed."""
    cdef Py_ssize_t size = len(frame)
    cdef Py_ssize_t backlog
    cdef list changed = []
    cdef Subscriber sub
    for item in subscribers:
        sub = <Subscriber>item
        if sub.is_lagging:
            continue
        backlog = sub.backlog()
        if sub.policy != BLOCK_POLICY and backlog > 0 and backlog + size > sub.limit:
            if sub.policy == RESYNC_POLICY:
                sub.start_lagging()
            if sub.level != LIMIT_LEVEL:
                if sub.level == NORMAL_LEVEL:
                    sub.warnings += 1
                sub.level = LIMIT_LEVEL
                changed.append(sub)
            continue
        if sub.is_live:
            sub.transport.write(frame)
            sub.bytes_delivered += size
        else:
            sub.held.append(frame)
            sub.held_bytes += size
        if sub.update_level():
            changed.append(sub)
    return changed
