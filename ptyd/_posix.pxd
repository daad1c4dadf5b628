# The system calls the compiled modules make without the GIL, declared once for all of them.

from posix.types cimport off_t

cdef extern from "unistd.h" nogil:
    ssize_t c_read "read"(int fd, void* buf, size_t count)
    ssize_t c_pread "pread"(int fd, void* buf, size_t count, off_t offset)
    ssize_t c_write "write"(int fd, const void* buf, size_t count)

cdef extern from "sched.h" nogil:
    int sched_yield()

cdef extern from "poll.h" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int c_poll "poll"(pollfd* fds, unsigned long nfds, int timeout)
    enum: POLLIN
