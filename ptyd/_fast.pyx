# cython: language_level=3
# The compiled twin of _fast_py: same names, same behaviour, same frames.
#
# Ownership: every OutputPump reads into the one module read buffer (pump() runs only on the
# loop thread and copies the batch out before it returns, so no two pumps use it at once; it is
# never exported as a view). Each ReplayRing owns one circular buffer, grown on demand up to its
# capacity. Frames are immutable bytes shared by every subscriber: each subscriber keeps a
# count, never a copy; the data handed back to the control plane is a view of the same frame.
# Copies per batch: kernel -> read buffer, read buffer -> frame, read buffer -> ring.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from ptyd._posix cimport POLLIN, c_poll, c_read, pollfd

cdef extern from "Python.h":
    PyObject* new_bytes "PyBytes_FromStringAndSize"(const char* data, Py_ssize_t n) except NULL
    int _PyBytes_Resize(PyObject** obj, Py_ssize_t n) except -1
    char* bytes_data "PyBytes_AS_STRING"(PyObject* obj)

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
    RING_MIN = 4096  # first allocation of a ring; it doubles from there up to its capacity

cdef unsigned char* read_buf = NULL  # the module read buffer (see Ownership above)
cdef Py_ssize_t read_buf_size = 0


# Grow the module read buffer to at least n bytes (never shrinks: it is the largest budget).
cdef int reserve_read_buf(Py_ssize_t n) except -1:
    global read_buf, read_buf_size
    if n <= read_buf_size:
        return 0
    cdef unsigned char* grown = <unsigned char*>realloc(read_buf, n)
    if grown == NULL:
        raise MemoryError()
    read_buf = grown
    read_buf_size = n
    return 0


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
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        self.capacity = capacity
        self.buf = NULL
        self.size = 0
        self.used = 0
        self.head = 0
        self.end = 0

    def __dealloc__(self):
        free(self.buf)

    # Reallocate to hold at least need bytes (need <= capacity), oldest byte first at index 0.
    cdef int grow(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t size = max(self.size, <Py_ssize_t>RING_MIN)
        while size < need:
            size *= 2
        size = min(size, self.capacity)
        cdef unsigned char* grown = <unsigned char*>malloc(size)
        if grown == NULL:
            raise MemoryError()
        cdef Py_ssize_t first = min(self.used, self.size - self.head)
        if self.used:
            memcpy(grown, self.buf + self.head, first)
            memcpy(grown + first, self.buf, self.used - first)
        free(self.buf)
        self.buf = grown
        self.size = size
        self.head = 0
        return 0

    # Copy the tail of data into the circular buffer (at most capacity bytes).
    cdef int append_c(self, const unsigned char* data, Py_ssize_t n) except -1:
        cdef Py_ssize_t cap = self.capacity, size, tail, first
        self.end += n
        if cap == 0 or n == 0:
            return 0
        if self.size < cap and self.used + n > self.size:
            self.grow(min(cap, self.used + n))
        size = self.size
        if n >= size:  # only once grown to capacity: keep the last size bytes
            memcpy(self.buf, data + n - size, size)
            self.head = 0
            self.used = size
            return 0
        tail = (self.head + self.used) % size
        first = min(n, size - tail)
        memcpy(self.buf + tail, data, first)
        memcpy(self.buf, data + first, n - first)
        if self.used + n > size:
            self.head = (self.head + self.used + n - size) % size
            self.used = size
        else:
            self.used += n
        return 0

    def append(self, const unsigned char[::1] data):
        self.append_c(&data[0] if data.shape[0] else NULL, data.shape[0])

    @property
    def start(self):
        return self.end - self.used

    @property
    def allocated(self):
        """Bytes allocated now (grows with the output, up to capacity)."""
        return self.size

    def since(self, unsigned long long offset):
        """Exactly the bytes from ``offset`` to the end, or None if they are no longer held."""
        if offset > self.end or offset < self.end - self.used:
            return None
        cdef Py_ssize_t n = self.end - offset
        cdef Py_ssize_t size = self.size, begin, first
        out = PyBytes_FromStringAndSize(NULL, n)
        cdef unsigned char* dst = <unsigned char*>PyBytes_AS_STRING(out)
        if n:
            begin = (self.head + self.used - n) % size
            first = min(n, size - begin)
            memcpy(dst, self.buf + begin, first)
            memcpy(dst + first, self.buf, n - first)
        return out


cdef class OutputPump:
    """Reads one session's PTY and fans each batch out to its subscribers as one shared frame."""

    def __cinit__(self, int fd, bytes frame_prefix not None, Py_ssize_t ring_capacity,
                  Py_ssize_t read_budget):
        if read_budget <= 0:
            raise ValueError("read_budget must be positive")
        self.fd = fd
        self.frame_prefix = frame_prefix
        self.ring = ReplayRing(ring_capacity)
        self.read_budget = read_budget
        self.subscribers = []
        reserve_read_buf(read_budget)

    @property
    def offset(self):
        return self.ring.end

    def pump(self):
        """Read until EAGAIN, end of file or the byte budget; frame the batch once and offer it
        to every subscriber. Returns (data, is_eof, subscribers whose level changed); data is a
        view of the frame's payload (bytes when no subscriber needed a frame)."""
        cdef Py_ssize_t total = 0, want
        cdef ssize_t got
        cdef bint is_eof = False
        while total < self.read_budget:
            want = min(<Py_ssize_t>READ_SIZE, self.read_budget - total)
            got = c_read(self.fd, read_buf + total, want)
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
        data, changed = self._publish(read_buf, total, True)
        return data, is_eof, changed

    def read_batch(self, Py_ssize_t budget, int quiet_ms=0, int max_ms=0):
        """Read up to ``budget`` bytes into a new bytes object, with the GIL released: for a
        worker thread, never while pump() may run for the same PTY. When the PTY runs dry the
        batch ends, unless it has lasted less than ``max_ms`` and more output comes within
        ``quiet_ms``. Returns (data, is_eof); publish(data) on the loop thread then appends it
        to the stream."""
        if budget <= 0:
            raise ValueError("budget must be positive")
        cdef PyObject* raw = new_bytes(NULL, budget)  # owned reference, resized below
        cdef char* dst = bytes_data(raw)
        cdef Py_ssize_t total = 0
        cdef int is_eof
        with nogil:
            is_eof = read_until_quiet(self.fd, dst, budget, quiet_ms, max_ms, &total)
        _PyBytes_Resize(&raw, total)  # on failure it has freed raw and raised MemoryError
        data = <object>raw
        Py_DECREF(data)  # the cast took a second reference
        return data, is_eof != 0

    def publish(self, const unsigned char[::1] data):
        """Append data to the stream: ring, one frame, try-put to each subscriber."""
        return self._publish(&data[0] if data.shape[0] else NULL, data.shape[0], False)[1]

    # Ring, then one frame (only if someone subscribes) offered to every subscriber; returns
    # (the data as a bytes-like object if is_data_wanted else None, subscribers whose level
    # changed).
    cdef tuple _publish(self, const unsigned char* data, Py_ssize_t n, bint is_data_wanted):
        cdef unsigned long long offset = self.ring.end
        self.ring.append_c(data, n)
        if not self.subscribers:
            return PyBytes_FromStringAndSize(<const char*>data, n) if is_data_wanted else None, []
        frame = _encode_output(self.frame_prefix, offset, data, n)
        changed = fan_out(self.subscribers, frame)
        if not is_data_wanted:
            return None, changed
        return memoryview(frame)[PyBytes_GET_SIZE(frame) - n:], changed


# Read fd into dst until budget bytes, end of file, or the PTY dry with no more output within
# quiet_ms (or max_ms since the start); *total is the count read. Returns 1 at end of file or
# EIO, else 0. Called without the GIL, on a worker thread.
cdef int read_until_quiet(int fd, char* dst, Py_ssize_t budget, int quiet_ms, int max_ms,
                          Py_ssize_t* total) noexcept nogil:
    cdef ssize_t got
    cdef Py_ssize_t n = 0
    cdef int result = 0
    cdef long waited_ms
    cdef timespec start, now
    cdef pollfd ready
    ready.fd = fd
    ready.events = POLLIN
    clock_gettime(CLOCK_MONOTONIC, &start)
    while n < budget:
        got = c_read(fd, dst + n, min(<Py_ssize_t>READ_SIZE, budget - n))
        if got > 0:
            n += got
            continue
        if got == 0:
            result = 1
        elif errno == EINTR:
            continue
        elif errno != EAGAIN:
            result = 1  # EIO: every slave descriptor is closed
        else:
            clock_gettime(CLOCK_MONOTONIC, &now)
            waited_ms = ((now.tv_sec - start.tv_sec) * 1000
                         + (now.tv_nsec - start.tv_nsec) // 1000000)
            if waited_ms < max_ms and c_poll(&ready, 1, min(quiet_ms, max_ms - waited_ms)) > 0:
                continue
        break
    total[0] = n
    return result


cdef inline void _put_be(unsigned char* dst, unsigned long long value, int width) noexcept nogil:
    cdef int i
    for i in range(width):
        dst[width - 1 - i] = <unsigned char>(value >> (8 * i))


cdef bytes _encode_output(bytes prefix, unsigned long long offset,
                          const unsigned char* data, Py_ssize_t n):
    cdef Py_ssize_t plen = PyBytes_GET_SIZE(prefix)
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


def encode_output(bytes prefix not None, unsigned long long offset, const unsigned char[::1] data):
    """The complete output frame; layout defined by protocol.output_frame_prefix."""
    return _encode_output(prefix, offset, &data[0] if data.shape[0] else NULL, data.shape[0])


cpdef list fan_out(list subscribers, bytes frame):
    """Offer one shared frame to every subscriber (try-put against its limit); return those
    whose level changed."""
    cdef Py_ssize_t size = len(frame)  # raises TypeError for None
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
