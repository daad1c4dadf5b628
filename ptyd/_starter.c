/*
 * ptyd: the command users type. A small C program in front of the Python command line.
 *
 * Why it exists: a Python process takes 30-40 ms to show a screen, most of it the interpreter
 * and its imports, where `tmux attach` takes 5. For `ptyd attach TARGET` in a terminal this
 * program connects, says hello, attaches with an ANSI snapshot, puts the terminal in raw mode
 * and paints the screen itself, then execs the Python command line (`ptyd-py`, installed beside
 * it) with the same arguments, handing over the attached connection, the answers and the
 * terminal's saved modes (PTYD_HANDOFF, read by ptyd/handoff.py). Everything after the first
 * screen (keys, output, the detach key, resync, stop and continue, every ending) is the Python
 * relay's; nothing is implemented twice. Output that arrives meanwhile waits in the socket and
 * keys wait in the terminal: nothing is lost or shown twice.
 *
 * Every other command, and any attach this program is not sure of (options it does not know,
 * no daemon listening, an error answer, not a terminal), goes straight to `ptyd-py`, which does
 * the whole job and reports errors as always. The Python side checks that what was attached is
 * what its own parse of the arguments asks for, and otherwise starts over.
 *
 * The wire format is the one in ptyd/protocol.py (length-prefixed msgpack); the version, the
 * features and the size limit come from there through build/generated/ptyd_starter.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "ptyd_starter.h"

#define PYTHON_COMMAND "ptyd-py"
#define MAX_ANSWER_FRAME (512u * 1024 * 1024) /* protocol.MAX_RESPONSE_FRAME */
#define MAX_DEPTH 64

struct buffer {
    unsigned char *data;
    size_t len, cap;
};

struct plan {
    const char *socket_path; /* -S, -L or PTYD_SOCKET; NULL: the default */
    const char *socket_name;
    const char *target;
    int read_only;
};

/* ---- what to run ------------------------------------------------------------------------ */

static char self_dir[PATH_MAX];

/* The directory this program was installed in: `ptyd-py` is there too (same install scheme),
 * also when `ptyd` is reached through a symlink (pipx). Without /proc: where the shell found it
 * (argv[0] as given, or searched on PATH as execvp does); 0 if nowhere. */
static int find_self_dir(const char *argv0) {
    ssize_t n = readlink("/proc/self/exe", self_dir, sizeof self_dir - 1);
    if (n > 0) {
        self_dir[n] = 0;
    } else if (strchr(argv0, '/')) {
        snprintf(self_dir, sizeof self_dir, "%s", argv0);
    } else {
        const char *path = getenv("PATH");
        int found = 0;
        while (path && !found) {
            const char *end = strchrnul(path, ':');
            int len = (int)(end - path);
            snprintf(self_dir, sizeof self_dir, "%.*s/%s", len, len ? path : ".", argv0);
            if (!len) snprintf(self_dir, sizeof self_dir, "./%s", argv0);
            found = access(self_dir, X_OK) == 0;
            path = *end ? end + 1 : NULL;
        }
        if (!found) return 0;
    }
    *strrchr(self_dir, '/') = 0;
    return 1;
}

static void python_path(char *out, size_t size) {
    snprintf(out, size, "%s/%s", self_dir, PYTHON_COMMAND);
}

static void exec_python(char **argv) {
    static char path[PATH_MAX + sizeof PYTHON_COMMAND + 1];
    python_path(path, sizeof path);
    argv[0] = path;
    execv(path, argv);
}

/* ---- the arguments this program handles ---------------------------------------------------- */

static int is_daemon_name(const char *name) {
    size_t n = strlen(name);
    if (n < 1 || n > 64 || !strcmp(name, ".") || !strcmp(name, "..")) return 0;
    for (const char *p = name; *p; p++)
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '-'))
            return 0;
    return 1;
}

static int is_digits(const char *s, size_t most) {
    size_t n = strlen(s);
    if (n < 1 || n > most) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

/* keys.parse_detach_key: ^X or C-x (a letter, @ [ \ ] ^ _ or ?), or one ASCII character. */
static int is_detach_key(const char *spec) {
    const char *key = !strncmp(spec, "^", 1) ? spec + 1 : !strncmp(spec, "C-", 2) ? spec + 2 : NULL;
    if (key && key[0] && !key[1]) {
        char c = key[0];
        if (c == '?' || ('a' <= c && c <= 'z') || (0x40 <= c && c <= 0x5f)) return 1;
    }
    return spec[0] && !spec[1] && (unsigned char)spec[0] < 0x80;
}

/* config.parse_bool, for PTYD_PURE: any other value is the Python command line's to report. */
static int is_boolean(const char *text) {
    static const char *const words[] = {"", "0", "1", "true", "false", "yes", "no", "on", "off"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (!strcmp(text, words[i])) return 1;
    return 0;
}

static int is_spin_us(const char *text) { return is_digits(text, 6) && atoi(text) <= 100000; }

/* `[globals] attach [globals and options] TARGET`, with values the Python command line would
 * accept, and settings (PTYD_PURE, PTYD_SPIN_US) that it would read; 0 for anything else (the
 * Python command line then does all of it, reporting what it finds wrong with nothing attached). */
static int plan_attach(int argc, char **argv, struct plan *plan) {
    int saw_attach = 0, has_key = 0, no_key = 0;
    const char *pure = getenv("PTYD_PURE"), *spin = getenv("PTYD_SPIN_US");
    if ((pure && !is_boolean(pure)) || (spin && *spin && !is_spin_us(spin))) return 0;
    memset(plan, 0, sizeof *plan);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (plan->target) return 0; /* after the target: -A's command, or a mistake */
        int is_socket = !strcmp(arg, "-S") || !strcmp(arg, "--socket");
        if (is_socket || !strcmp(arg, "-L") || !strcmp(arg, "-e") || !strcmp(arg, "--spin-us")) {
            if (i + 1 >= argc) return 0;
            const char *value = argv[++i];
            if (is_socket) {
                plan->socket_path = value;
            } else if (arg[1] == 'L') {
                if (!is_daemon_name(value)) return 0;
                plan->socket_name = value;
            } else if (!saw_attach) {
                return 0; /* an attach option before the command: a usage error */
            } else if (arg[1] == 'e') {
                if (!is_detach_key(value)) return 0;
                has_key = 1;
            } else if (!is_spin_us(value)) {
                return 0;
            }
        } else if (!strcmp(arg, "--no-autostart")) {
            /* this program never starts a daemon: with none listening, Python does */
        } else if (!strcmp(arg, "-r") && saw_attach) {
            plan->read_only = 1;
        } else if (!strcmp(arg, "-E") && saw_attach) {
            no_key = 1;
        } else if (arg[0] == '-') {
            return 0; /* help, --version, -A, --no-tty, a joined value... */
        } else if (!saw_attach) {
            if (strcmp(arg, "attach")) return 0;
            saw_attach = 1;
        } else {
            plan->target = arg;
        }
    }
    return saw_attach && plan->target && *plan->target && !(has_key && no_key);
}

/* config.py: -S (made absolute; it wins over -L), -L NAME, PTYD_SOCKET, else the default
 * directory. */
static int socket_path(const struct plan *plan, char *out, size_t size) {
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    char dir[PATH_MAX];
    if (runtime && runtime[0] == '/') snprintf(dir, sizeof dir, "%s/ptyd", runtime);
    else snprintf(dir, sizeof dir, "/tmp/ptyd-%u", (unsigned)getuid());
    int n;
    if (plan->socket_path && plan->socket_path[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return 0;
        n = snprintf(out, size, "%s/%s", cwd, plan->socket_path);
    } else if (plan->socket_path) {
        n = snprintf(out, size, "%s", plan->socket_path);
    } else if (plan->socket_name) {
        n = snprintf(out, size, "%s/%s.sock", dir, plan->socket_name);
    } else if (getenv("PTYD_SOCKET") && *getenv("PTYD_SOCKET")) {
        n = snprintf(out, size, "%s", getenv("PTYD_SOCKET"));
    } else {
        n = snprintf(out, size, "%s/default.sock", dir);
    }
    return n > 0 && (size_t)n < size;
}

/* ---- msgpack, the little of it two requests and their answers need ---------------------------- */

static void reserve(struct buffer *b, size_t len) {
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len) cap *= 2;
        unsigned char *grown = realloc(b->data, cap);
        if (!grown) abort();
        b->data = grown;
        b->cap = cap;
    }
}

static void put(struct buffer *b, const void *data, size_t len) {
    reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void put_byte(struct buffer *b, unsigned char c) { put(b, &c, 1); }

static void put_be(struct buffer *b, uint64_t value, int size) {
    unsigned char bytes[8];
    for (int i = 0; i < size; i++) bytes[i] = (unsigned char)(value >> (8 * (size - 1 - i)));
    put(b, bytes, (size_t)size);
}

static void put_str(struct buffer *b, const char *s) {
    size_t n = strlen(s);
    if (n < 32) put_byte(b, (unsigned char)(0xa0 | n));
    else if (n < 256) { put_byte(b, 0xd9); put_be(b, n, 1); }
    else if (n < 65536) { put_byte(b, 0xda); put_be(b, n, 2); }
    else { put_byte(b, 0xdb); put_be(b, n, 4); }
    put(b, s, n);
}

static void put_uint(struct buffer *b, uint64_t v) {
    if (v < 128) put_byte(b, (unsigned char)v);
    else if (v < 256) { put_byte(b, 0xcc); put_be(b, v, 1); }
    else if (v < 65536) { put_byte(b, 0xcd); put_be(b, v, 2); }
    else if (v <= 0xffffffffu) { put_byte(b, 0xce); put_be(b, v, 4); }
    else { put_byte(b, 0xcf); put_be(b, v, 8); }
}

static void put_map(struct buffer *b, unsigned n) { put_byte(b, (unsigned char)(0x80 | n)); }

/* A frame: the 4-byte big-endian length, then the body, filled in by the caller. */
static size_t begin_frame(struct buffer *b) {
    put_be(b, 0, 4);
    return b->len;
}

static void end_frame(struct buffer *b, size_t start) {
    uint32_t n = (uint32_t)(b->len - start);
    for (int i = 0; i < 4; i++) b->data[start - 4 + i] = (unsigned char)(n >> (8 * (3 - i)));
}

/* cli._target: ASCII digits are a session id, if a 64-bit one; any other text a name. */
static int as_id(const char *s, uint64_t *id) {
    *id = 0;
    if (!*s) return 0;
    for (; *s; s++) {
        unsigned digit = (unsigned)(*s - '0');
        if (digit > 9 || *id > (UINT64_MAX - digit) / 10) return 0;
        *id = *id * 10 + digit;
    }
    return 1;
}

/* The hello and the attach, as BlockingConnection and attach.Relay send them; returns where
 * the attach's frame starts. */
static size_t write_requests(struct buffer *b, const struct plan *plan, int cols, int rows) {
    size_t start = begin_frame(b);
    put_map(b, 5);
    put_str(b, "type"); put_str(b, "hello");
    put_str(b, "id"); put_uint(b, 1);
    put_str(b, "version"); put_str(b, PTYD_PROTOCOL_VERSION);
    put_str(b, "features");
    put_byte(b, (unsigned char)(0x90 | PTYD_FEATURE_COUNT));
    for (int i = 0; i < PTYD_FEATURE_COUNT; i++) put_str(b, PTYD_FEATURES[i]);
    put_str(b, "client"); put_str(b, "ptyd-cli/" PTYD_VERSION);
    end_frame(b, start);

    size_t attach_at = b->len;
    start = begin_frame(b);
    put_map(b, 9);
    put_str(b, "type"); put_str(b, "attach");
    put_str(b, "id"); put_uint(b, 2);
    put_str(b, "session");
    uint64_t id;
    if (as_id(plan->target, &id)) put_uint(b, id);
    else put_str(b, plan->target);
    put_str(b, "snapshot"); put_str(b, "ansi");
    put_str(b, "policy"); put_str(b, "resync");
    put_str(b, "from_offset"); put_byte(b, 0xc0);
    put_str(b, "read_only"); put_byte(b, plan->read_only ? 0xc3 : 0xc2);
    put_str(b, "cols"); put_uint(b, (uint64_t)cols);
    put_str(b, "rows"); put_uint(b, (uint64_t)rows);
    end_frame(b, start);
    return attach_at;
}

struct cursor {
    const unsigned char *p, *end;
};

static int take(struct cursor *c, size_t n, const unsigned char **out) {
    if ((size_t)(c->end - c->p) < n) return 0;
    *out = c->p;
    c->p += n;
    return 1;
}

static uint64_t be(const unsigned char *p, int size) {
    uint64_t v = 0;
    for (int i = 0; i < size; i++) v = (v << 8) | p[i];
    return v;
}

enum kind { K_BAD, K_NIL, K_BOOL, K_INT, K_STR, K_BIN, K_ARRAY, K_MAP, K_OTHER };

struct item {
    enum kind kind;
    int64_t number; /* ints and bools; the count of an array or a map */
    const unsigned char *data; /* str, bin */
    size_t len;
};

/* The next item's head: scalars whole, containers as their count (entries follow). */
static struct item next_head(struct cursor *c) {
    struct item it = {K_BAD, 0, NULL, 0};
    const unsigned char *h, *x;
    if (!take(c, 1, &h)) return it;
    unsigned t = h[0];
    size_t n = 0;
    int size = 0;
    if (t <= 0x7f) { it.kind = K_INT; it.number = t; return it; }
    if (t >= 0xe0) { it.kind = K_INT; it.number = (int8_t)t; return it; }
    if ((t & 0xf0) == 0x80) { it.kind = K_MAP; it.number = t & 0x0f; return it; }
    if ((t & 0xf0) == 0x90) { it.kind = K_ARRAY; it.number = t & 0x0f; return it; }
    if ((t & 0xe0) == 0xa0) { it.kind = K_STR; n = t & 0x1f; goto bytes; }
    switch (t) {
    case 0xc0: it.kind = K_NIL; return it;
    case 0xc2: case 0xc3: it.kind = K_BOOL; it.number = t == 0xc3; return it;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        size = 1 << (t - 0xcc);
        if (!take(c, (size_t)size, &x)) return it;
        it.kind = K_INT; it.number = (int64_t)be(x, size); return it;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        size = 1 << (t - 0xd0);
        if (!take(c, (size_t)size, &x)) return it;
        it.kind = K_INT;
        it.number = size == 1 ? (int8_t)x[0] : size == 2 ? (int16_t)be(x, 2)
                  : size == 4 ? (int32_t)be(x, 4) : (int64_t)be(x, 8);
        return it;
    case 0xca: case 0xcb:
        if (!take(c, t == 0xca ? 4 : 8, &x)) return it;
        it.kind = K_OTHER; return it;
    case 0xd9: case 0xda: case 0xdb:
        size = 1 << (t - 0xd9);
        if (!take(c, (size_t)size, &x)) return it;
        it.kind = K_STR; n = (size_t)be(x, size); goto bytes;
    case 0xc4: case 0xc5: case 0xc6:
        size = 1 << (t - 0xc4);
        if (!take(c, (size_t)size, &x)) return it;
        it.kind = K_BIN; n = (size_t)be(x, size); goto bytes;
    case 0xdc: case 0xdd:
        size = t == 0xdc ? 2 : 4;
        if (!take(c, (size_t)size, &x)) return it;
        it.kind = K_ARRAY; it.number = (int64_t)be(x, size); return it;
    case 0xde: case 0xdf:
        size = t == 0xde ? 2 : 4;
        if (!take(c, (size_t)size, &x)) return it;
        it.kind = K_MAP; it.number = (int64_t)be(x, size); return it;
    case 0xd4: n = 2; goto other;
    case 0xd5: n = 3; goto other;
    case 0xd6: n = 5; goto other;
    case 0xd7: n = 9; goto other;
    case 0xd8: n = 17; goto other;
    case 0xc7: case 0xc8: case 0xc9:
        size = 1 << (t - 0xc7);
        if (!take(c, (size_t)size, &x)) return it;
        n = (size_t)be(x, size) + 1;
        goto other;
    default:
        return it;
    }
bytes:
    if (!take(c, n, &it.data)) { it.kind = K_BAD; return it; }
    it.len = n;
    return it;
other:
    if (!take(c, n, &x)) return it;
    it.kind = K_OTHER;
    return it;
}

/* Skip one whole item, nested ones included. */
static int skip(struct cursor *c, int depth) {
    struct item it = next_head(c);
    if (it.kind == K_BAD || depth > MAX_DEPTH) return 0;
    int64_t entries = it.kind == K_MAP ? 2 * it.number : it.kind == K_ARRAY ? it.number : 0;
    for (int64_t i = 0; i < entries; i++)
        if (!skip(c, depth + 1)) return 0;
    return 1;
}

static int is_key(const struct item *it, const char *name) {
    return it->kind == K_STR && it->len == strlen(name) && !memcmp(it->data, name, it->len);
}

/* At a map: leave the cursor at the value of `name`; 0 if there is none. */
static int find(struct cursor *c, const char *name) {
    struct item map = next_head(c);
    if (map.kind != K_MAP) return 0;
    for (int64_t i = 0; i < map.number; i++) {
        struct cursor at = *c;
        struct item key = next_head(&at);
        if (key.kind == K_BAD) return 0;
        if (is_key(&key, name)) {
            *c = at;
            return 1;
        }
        if (!skip(c, 0) || !skip(c, 0)) return 0;
    }
    return 0;
}

/* The result map of a successful response to request `id`; 0 for anything else. */
static int ok_result(const struct buffer *body, int64_t id, struct cursor *result) {
    struct cursor c = {body->data, body->data + body->len};
    struct cursor at = c;
    struct item it;
    if (!find(&at, "type")) return 0;
    it = next_head(&at);
    if (!is_key(&it, "response")) return 0;
    at = c;
    if (!find(&at, "id") || (it = next_head(&at)).kind != K_INT || it.number != id) return 0;
    at = c;
    if (!find(&at, "ok") || (it = next_head(&at)).kind != K_BOOL || !it.number) return 0;
    at = c;
    if (!find(&at, "result")) return 0;
    *result = at;
    return 1;
}

/* ---- the socket --------------------------------------------------------------------------- */

static int write_all(int fd, const unsigned char *data, size_t len) {
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EAGAIN) {
            fd_set set; /* a descriptor left non-blocking by whoever ran us */
            FD_ZERO(&set);
            FD_SET(fd, &set);
            select(fd + 1, NULL, &set, NULL, NULL);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        data += n;
        len -= (size_t)n;
    }
    return 1;
}

static int read_all(int fd, unsigned char *data, size_t len) {
    while (len) {
        ssize_t n = read(fd, data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        data += n;
        len -= (size_t)n;
    }
    return 1;
}

/* One frame: `frame` gets the length prefix and the body (as handed over), `body` the body. */
static int read_frame(int fd, struct buffer *frame, struct buffer *body) {
    unsigned char head[4];
    if (!read_all(fd, head, 4)) return 0;
    uint32_t n = (uint32_t)be(head, 4);
    if (n > MAX_ANSWER_FRAME) return 0;
    put(frame, head, 4);
    size_t start = frame->len;
    reserve(frame, n);
    if (!read_all(fd, frame->data + start, n)) return 0;
    frame->len += n;
    body->data = frame->data + start;
    body->len = n;
    return 1;
}

/* socketdir.check_daemon_socket and check_daemon_peer: only a socket of ours, in a directory of
 * ours, with our own uid (or root) listening. */
static int connect_daemon(const char *path) {
    struct stat info;
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof address.sun_path) return -1;
    if (lstat(path, &info) || info.st_uid != getuid() || !S_ISSOCK(info.st_mode)) return -1;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) dir[1] = 0;
    else if (slash) *slash = 0;
    else strcpy(dir, ".");
    if (lstat(dir, &info) || info.st_uid != getuid()) return -1;
    strcpy(address.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct ucred peer;
    socklen_t size = sizeof peer;
    if (connect(fd, (struct sockaddr *)&address, sizeof address) ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) ||
        (peer.uid != getuid() && peer.uid != 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the attach ----------------------------------------------------------------------------- */

/* A file with no name for the answers (a snapshot may be megabytes: more than a pipe holds until
 * its reader starts). memfd_create where the build's headers know it (older glibc has no wrapper);
 * else a file in the socket's directory, which is ours and private, unlinked at once. */
static int anonymous_file(const char *socket_path) {
#ifdef SYS_memfd_create
    int fd = (int)syscall(SYS_memfd_create, "ptyd-handoff", 0);
    if (fd >= 0) return fd;
#endif
    char name[PATH_MAX];
    if (snprintf(name, sizeof name, "%s.handoff-XXXXXX", socket_path) >= (int)sizeof name)
        return -1;
    int file = mkstemp(name);
    if (file >= 0) unlink(name);
    return file;
}

/* attach.terminal_size: the terminal's size, 80x24 where it reports none, at most MAX_SIZE. */
static void terminal_size(int *cols, int *rows) {
    struct winsize size = {0};
    ioctl(1, TIOCGWINSZ, &size);
    *cols = size.ws_col ? size.ws_col : 80;
    *rows = size.ws_row ? size.ws_row : 24;
    if (*cols > PTYD_MAX_SIZE) *cols = PTYD_MAX_SIZE;
    if (*rows > PTYD_MAX_SIZE) *rows = PTYD_MAX_SIZE;
}

/* Python's tty.setraw. */
static void make_raw(struct termios *mode) {
    mode->c_iflag &= ~(tcflag_t)(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
    mode->c_oflag &= ~(tcflag_t)OPOST;
    mode->c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    mode->c_cflag |= CS8;
    mode->c_lflag &= ~(tcflag_t)(ECHO | ICANON | IEXTEN | ISIG);
    mode->c_cc[VMIN] = 1;
    mode->c_cc[VTIME] = 0;
}

/* Attach and show the screen, then exec the Python relay; returns only if it could not (having
 * changed nothing the Python command line would see). */
static void attach(const struct plan *plan, char **argv) {
    char path[PATH_MAX], python[PATH_MAX + sizeof PYTHON_COMMAND + 1];
    python_path(python, sizeof python);
    if (!isatty(0) || !isatty(1) || access(python, X_OK) ||
        !socket_path(plan, path, sizeof path))
        return;
    /* A resize from here on is held for the relay (SIGWINCH is otherwise discarded: its
     * default is to ignore it); the stop signals still end this program while nothing is
     * changed (a daemon that does not answer can be interrupted). */
    sigset_t resize, held;
    sigemptyset(&resize);
    sigaddset(&resize, SIGWINCH);
    sigprocmask(SIG_BLOCK, &resize, NULL);
    int fd = connect_daemon(path);
    if (fd < 0) {
        sigprocmask(SIG_UNBLOCK, &resize, NULL);
        return;
    }
    int cols, rows;
    terminal_size(&cols, &rows);
    struct buffer out = {0}, answers = {0}, hello = {0}, attached = {0};
    size_t attach_at = write_requests(&out, plan, cols, rows);
    struct cursor result;
    struct item version;
    if (!write_all(fd, out.data, out.len) || !read_frame(fd, &answers, &hello) ||
        !ok_result(&hello, 1, &result) || !find(&result, "version") ||
        (version = next_head(&result)).kind != K_STR ||
        version.len < sizeof PTYD_PROTOCOL_MAJOR ||
        memcmp(version.data, PTYD_PROTOCOL_MAJOR ".", sizeof PTYD_PROTOCOL_MAJOR) ||
        !read_frame(fd, &answers, &attached) || !ok_result(&attached, 2, &result) ||
        !find(&result, "snapshot")) {
        close(fd); /* the daemon drops the attachment with the connection */
        sigprocmask(SIG_UNBLOCK, &resize, NULL);
        return;
    }
    struct item snapshot = next_head(&result);
    if (snapshot.kind != K_BIN && snapshot.kind != K_STR) {
        close(fd);
        sigprocmask(SIG_UNBLOCK, &resize, NULL);
        return;
    }

    /* The stop signals wait too, blocked, until the relay's handlers are in place: the
     * terminal is raw from here on and only the relay restores it. */
    sigemptyset(&held);
    int signals[] = {SIGINT, SIGTERM, SIGHUP, SIGTSTP, SIGWINCH};
    for (size_t i = 0; i < sizeof signals / sizeof *signals; i++) sigaddset(&held, signals[i]);
    sigprocmask(SIG_BLOCK, &held, NULL);
    struct termios saved, raw;
    /* For handoff.py: the two answers, then the attach as asked (to compare with its own). */
    int answers_fd = anonymous_file(path);
    if (tcgetattr(0, &saved) || answers_fd < 0 ||
        !write_all(answers_fd, answers.data, answers.len) ||
        !write_all(answers_fd, out.data + attach_at, out.len - attach_at) ||
        lseek(answers_fd, 0, SEEK_SET)) {
        close(fd);
        if (answers_fd >= 0) close(answers_fd);
        sigprocmask(SIG_UNBLOCK, &held, NULL);
        return;
    }
    raw = saved;
    make_raw(&raw);
    tcsetattr(0, TCSADRAIN, &raw);
    write_all(1, (const unsigned char *)PTYD_REPAINT, sizeof PTYD_REPAINT - 1);
    write_all(1, snapshot.data, snapshot.len);

    fcntl(fd, F_SETFD, 0); /* both descriptors cross the exec */
    /* handoff.py reads it: descriptors, the saved modes, the socket path
     * (last: it may hold spaces) */
    size_t size = 512 + 4 * NCCS + strlen(path);
    char *handoff = malloc(size);
    if (handoff) {
        int n = snprintf(handoff, size, "%d %d %lu %lu %lu %lu %lu %lu ", fd, answers_fd,
                         (unsigned long)saved.c_iflag, (unsigned long)saved.c_oflag,
                         (unsigned long)saved.c_cflag, (unsigned long)saved.c_lflag,
                         (unsigned long)cfgetispeed(&saved), (unsigned long)cfgetospeed(&saved));
        for (int i = 0; i < NCCS; i++)
            n += snprintf(handoff + n, size - (size_t)n, i ? ",%u" : "%u", saved.c_cc[i]);
        snprintf(handoff + n, size - (size_t)n, " %s", path);
        setenv("PTYD_HANDOFF", handoff, 1);
        exec_python(argv);
    }
    int error = errno; /* checked before connecting; gone since, or out of memory */
    write_all(1, (const unsigned char *)PTYD_RESTORE, sizeof PTYD_RESTORE - 1);
    tcsetattr(0, TCSADRAIN, &saved);
    fprintf(stderr, "ptyd: cannot run %s: %s\n", python, strerror(error));
    exit(127);
}

int main(int argc, char **argv) {
    struct plan plan;
    if (!find_self_dir(argv[0])) {
        fprintf(stderr, "ptyd: cannot find where ptyd is installed (no /proc?): run %s\n",
                PYTHON_COMMAND);
        return 127;
    }
    if (plan_attach(argc, argv, &plan)) attach(&plan, argv);
    char python[PATH_MAX + sizeof PYTHON_COMMAND + 1];
    python_path(python, sizeof python);
    exec_python(argv);
    fprintf(stderr, "ptyd: cannot run %s: %s\n", python, strerror(errno));
    return 127;
}
