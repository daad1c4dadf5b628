# The compiled hot path: per-session output pump (read -> ring -> one frame) and fan-out.

cdef enum FlowLevel:
    NORMAL_LEVEL = 0
    WARNING_LEVEL = 1
    LIMIT_LEVEL = 2

cdef enum FlowPolicy:
    RESYNC_POLICY = 0
    DISCONNECT_POLICY = 1
    BLOCK_POLICY = 2


cdef class Subscriber:
    cdef public object transport
    cdef public int policy
    cdef public Py_ssize_t threshold
    cdef public Py_ssize_t limit
    cdef public object owner
    cdef public int level
    cdef public bint is_live
    cdef public bint is_lagging
    cdef public list held
    cdef public Py_ssize_t held_bytes
    cdef public unsigned long long bytes_delivered
    cdef public unsigned long long warnings
    cdef public unsigned long long resyncs

    cpdef Py_ssize_t backlog(self) except -1
    cpdef bint update_level(self) except -1
    cpdef void start_lagging(self) noexcept


cdef class ReplayRing:
    cdef unsigned char* buf  # size bytes, grown on demand up to capacity
    cdef readonly Py_ssize_t capacity
    cdef Py_ssize_t size  # bytes allocated; the circle wraps at size
    cdef Py_ssize_t used  # bytes held, at most size
    cdef Py_ssize_t head  # index of the oldest byte
    cdef readonly unsigned long long end

    cdef int grow(self, Py_ssize_t need) except -1
    cdef int append_c(self, const unsigned char* data, Py_ssize_t n) except -1


cdef class OutputPump:
    cdef readonly int fd
    cdef readonly bytes frame_prefix
    cdef readonly ReplayRing ring
    cdef readonly Py_ssize_t read_budget
    cdef public list subscribers

    cdef tuple _publish(self, const unsigned char* data, Py_ssize_t n, bint is_data_wanted)
