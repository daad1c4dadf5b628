"""Compiled terminal emulator engine (the default backend; semantics as ptyd.emulator)."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memmove, memset

from ptyd.emulator import (
    DA1_REPLY, DA2_REPLY, DSR_OK_REPLY, DEC_GRAPHICS, ScreenState, ScreenView, render_ansi,
    render_json, render_text, width_table,
)

cdef enum:
    # Parser actions, packed with the next state in TABLE entries as (action << 4) | state.
    A_NONE = 0
    A_EXECUTE = 1
    A_PRINT = 2
    A_COLLECT = 3
    A_PARAM = 4
    A_PRIVATE = 5
    A_ESC_DISPATCH = 6
    A_CSI_DISPATCH = 7
    A_OSC_PUT = 8
    A_OSC_END = 9
    A_ENTER_ESC = 10
    A_ENTER_CSI = 11
    A_ENTER_OSC = 12
    A_OSC_END_ESC = 13
    A_KEEP = 15       # no action and no state change

cdef uint8_t TABLE[N_STATES][128]
cdef uint8_t* WIDTH = NULL          # wcwidth of every code point (0, 1 or 2)
cdef uint32_t DEC_MAP[32]

cdef const char* ENCODING_NAMES[4]    # mouse_encoding 0-3; see encoding_id()
ENCODING_NAMES[0] = b"default"
ENCODING_NAMES[1] = b"utf8"
ENCODING_NAMES[2] = b"sgr"
ENCODING_NAMES[3] = b"urxvt"


cdef void set_range(int state, int lo, int hi, int action, int nxt) noexcept:
    cdef int c
    for c in range(lo, hi + 1):
        TABLE[state][c] = <uint8_t>((action << 4) | nxt)


cdef void build_table() noexcept:
    """The DEC parser transitions for ASCII; code points >= 0x80 are handled in process()."""
    cdef int s
    for s in range(N_STATES):
        set_range(s, 0, 127, A_KEEP, s)
        if s != ST_OSC and s != ST_STRING:
            set_range(s, 0x00, 0x1F, A_EXECUTE, s)
        set_range(s, 0x1B, 0x1B, A_ENTER_ESC, ST_ESCAPE)
        set_range(s, 0x18, 0x18, A_NONE, ST_GROUND)
        set_range(s, 0x1A, 0x1A, A_NONE, ST_GROUND)
    set_range(ST_GROUND, 0x20, 0x7E, A_PRINT, ST_GROUND)
    set_range(ST_ESCAPE, 0x20, 0x2F, A_COLLECT, ST_ESC_INTER)
    set_range(ST_ESCAPE, 0x30, 0x7E, A_ESC_DISPATCH, ST_GROUND)
    set_range(ST_ESCAPE, ord("["), ord("["), A_ENTER_CSI, ST_CSI_ENTRY)
    set_range(ST_ESCAPE, ord("]"), ord("]"), A_ENTER_OSC, ST_OSC)
    for s in b"PX^_":
        set_range(ST_ESCAPE, s, s, A_NONE, ST_STRING)
    set_range(ST_ESC_INTER, 0x20, 0x2F, A_COLLECT, ST_ESC_INTER)
    set_range(ST_ESC_INTER, 0x30, 0x7E, A_ESC_DISPATCH, ST_GROUND)
    set_range(ST_CSI_ENTRY, 0x20, 0x2F, A_COLLECT, ST_CSI_INTER)
    set_range(ST_CSI_ENTRY, 0x30, 0x3B, A_PARAM, ST_CSI_PARAM)
    set_range(ST_CSI_ENTRY, 0x3C, 0x3F, A_PRIVATE, ST_CSI_PARAM)
    set_range(ST_CSI_ENTRY, 0x40, 0x7E, A_CSI_DISPATCH, ST_GROUND)
    set_range(ST_CSI_PARAM, 0x20, 0x2F, A_COLLECT, ST_CSI_INTER)
    set_range(ST_CSI_PARAM, 0x30, 0x3B, A_PARAM, ST_CSI_PARAM)
    set_range(ST_CSI_PARAM, 0x3C, 0x3F, A_NONE, ST_CSI_IGNORE)
    set_range(ST_CSI_PARAM, 0x40, 0x7E, A_CSI_DISPATCH, ST_GROUND)
    set_range(ST_CSI_INTER, 0x20, 0x2F, A_COLLECT, ST_CSI_INTER)
    set_range(ST_CSI_INTER, 0x30, 0x3F, A_NONE, ST_CSI_IGNORE)
    set_range(ST_CSI_INTER, 0x40, 0x7E, A_CSI_DISPATCH, ST_GROUND)
    set_range(ST_CSI_IGNORE, 0x40, 0x7E, A_NONE, ST_GROUND)
    set_range(ST_OSC, 0x20, 0x7E, A_OSC_PUT, ST_OSC)
    set_range(ST_OSC, 0x07, 0x07, A_OSC_END, ST_GROUND)
    set_range(ST_OSC, 0x1B, 0x1B, A_OSC_END_ESC, ST_ESCAPE)


cdef int build_widths() except -1:
    """One byte per code point, from the same wcwidth rule the pure backend uses."""
    global WIDTH
    WIDTH = <uint8_t*>malloc(0x110000)
    if WIDTH == NULL:
        raise MemoryError()
    memset(WIDTH, 1, 0x110000)
    cdef int cp
    # Planes 4-13 and 15-16 hold no zero-width or wide characters in any Unicode version.
    for lo, hi in ((0x300, 0x40000), (0xE0000, 0xE1000)):
        widths = width_table(lo, hi)
        memcpy(WIDTH + <int>lo, PyBytes_AS_STRING(widths), PyBytes_GET_SIZE(widths))
    return 0


cdef int check_shared_constants() except -1:
    """The .pxd repeats ptyd.emulator's limits and cell encoding as C enums: they must agree."""
    from ptyd import emulator
    ours = {
        "ATTR_BOLD": ATTR_BOLD, "ATTR_FAINT": ATTR_FAINT, "ATTR_ITALIC": ATTR_ITALIC,
        "ATTR_UNDERLINE": ATTR_UNDERLINE, "ATTR_BLINK": ATTR_BLINK,
        "ATTR_REVERSE": ATTR_REVERSE, "ATTR_CONCEAL": ATTR_CONCEAL, "ATTR_STRIKE": ATTR_STRIKE,
        "COLOR_INDEXED": COLOR_INDEXED, "COLOR_RGB": COLOR_RGB, "MAX_PARAMS": MAX_PARAMS,
        "MAX_SUBPARAMS": MAX_SUBPARAMS, "MAX_PARAM_VALUE": MAX_PARAM_VALUE,
        "MAX_STRING": MAX_STRING, "MAX_TITLE": MAX_TITLE, "MAX_COMBINING": MAX_COMBINING,
        "MAX_REPLIES": MAX_REPLIES, "MAX_MARKS": MAX_MARKS, "MAX_DIMENSION": MAX_DIMENSION,
    }
    wrong = [name for name, value in ours.items() if getattr(emulator, name) != value]
    if wrong:
        raise ImportError(f"ptyd._vt is out of step with ptyd.emulator: {wrong}")
    return 0


check_shared_constants()
build_table()
build_widths()
for _i in range(32):
    DEC_MAP[_i] = ord(DEC_GRAPHICS[0x5F + _i])


cdef inline void blank_cells(Cell* cells, int n, uint32_t bg) noexcept nogil:
    cdef Cell blank
    cdef int i
    blank.ch = 32
    blank.comb = 0
    blank.fg = 0
    blank.bg = bg
    blank.flags = 0
    for i in range(n):
        cells[i] = blank


cdef inline bint is_trimmable(const Cell* c) noexcept nogil:
    return ((c.ch == 32 and c.comb == 0) or c.ch == 0) and c.fg == 0 and c.bg == 0 \
        and c.flags == 0


cdef inline int trimmed_len(const Cell* cells, int n) noexcept nogil:
    while n > 0 and is_trimmable(&cells[n - 1]):
        n -= 1
    return n


cdef int32_t color_from(const int32_t* sub, int n, bint colon) noexcept nogil:
    """A 38/48 colour from its sub-parameters; -1 when malformed or out of range."""
    cdef int32_t kind = sub[0] if n > 0 else -1
    cdef int32_t r, g, b
    cdef int off
    if kind == 5 and n >= 2:
        if sub[1] < 0:
            return COLOR_INDEXED
        return COLOR_INDEXED | sub[1] if sub[1] <= 255 else -1
    if kind == 2 and n >= 4:
        off = 2 if colon and n >= 5 else 1
        r = sub[off] if sub[off] > 0 else 0
        g = sub[off + 1] if sub[off + 1] > 0 else 0
        b = sub[off + 2] if sub[off + 2] > 0 else 0
        if r <= 255 and g <= 255 and b <= 255:
            return COLOR_RGB | (r << 16) | (g << 8) | b
    return -1


cdef inline Py_ssize_t decode_utf8(const unsigned char* p, Py_ssize_t n,
                                   uint32_t* cp) noexcept nogil:
    """Length of the valid UTF-8 character at p (its code point in cp), 0 if not complete."""
    cdef unsigned char b = p[0]
    if b <= 0xDF:
        if n >= 2 and (p[1] & 0xC0) == 0x80:
            cp[0] = ((b & 0x1F) << 6) | (p[1] & 0x3F)
            return 2
    elif b <= 0xEF:
        if n >= 3 and (p[1] & 0xC0) == 0x80 and (p[2] & 0xC0) == 0x80 \
                and (b != 0xE0 or p[1] >= 0xA0) and (b != 0xED or p[1] < 0xA0):
            cp[0] = ((b & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F)
            return 3
    elif b <= 0xF4:
        if n >= 4 and (p[1] & 0xC0) == 0x80 and (p[2] & 0xC0) == 0x80 \
                and (p[3] & 0xC0) == 0x80 and (b != 0xF0 or p[1] >= 0x90) \
                and (b != 0xF4 or p[1] < 0x90):
            cp[0] = ((b & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) \
                | (p[3] & 0x3F)
            return 4
    return 0


cdef class VtEmulator:
    """Compiled emulator: same behaviour as ``PyteEmulator``, C state, GIL released in feed."""

    def __cinit__(self, int cols, int rows, int scrollback=1000):
        self.ncols = max(1, min(cols, MAX_DIMENSION))
        self.nrows = max(1, min(rows, MAX_DIMENSION))
        self.sb_limit = max(0, scrollback)
        self.grid = self.alloc_screen(self.ncols, self.nrows)
        self.other = self.alloc_screen(self.ncols, self.nrows)
        self.tabs = <uint8_t*>calloc(self.ncols, 1)
        if self.tabs == NULL:
            raise MemoryError()
        self.full_reset()
        self.pstate = ST_GROUND

    def __dealloc__(self):
        self.free_screen(self.grid, self.nrows)
        self.free_screen(self.other, self.nrows)
        free(self.tabs)
        cdef int i
        if self.sb != NULL:
            for i in range(self.sb_len):
                free(self.sb[(self.sb_head + i) % self.sb_cap].data)
            free(self.sb)
        free(self.comb_slots)
        free(self.comb_marks)

    cdef Row* alloc_screen(self, int cols, int rows) except NULL:
        cdef Row* screen = <Row*>calloc(rows, sizeof(Row))
        cdef int y
        if screen == NULL:
            raise MemoryError()
        for y in range(rows):
            screen[y].cells = <Cell*>malloc(cols * sizeof(Cell))
            if screen[y].cells == NULL:
                self.free_screen(screen, rows)
                raise MemoryError()
        return screen

    cdef void free_screen(self, Row* screen, int rows) noexcept:
        cdef int y
        if screen != NULL:
            for y in range(rows):
                free(screen[y].cells)
            free(screen)

    cdef inline Cell* touch(self, int y, int n) noexcept nogil:
        """Row y with at least its first n cells materialised (see Row.used)."""
        cdef Row* row = &self.grid[y]
        if row.used < n:
            blank_cells(&row.cells[row.used], n - row.used, row.fill)
            row.used = n
        return row.cells

    # -- public API ------------------------------------------------------------------------
    @property
    def cols(self):
        return self.ncols

    @property
    def rows(self):
        return self.nrows

    @property
    def title(self):
        return "".join([chr(self.title_buf[i]) for i in range(self.title_len)])

    @property
    def icon_name(self):
        return "".join([chr(self.icon_buf[i]) for i in range(self.icon_len)])

    @property
    def marks(self):
        """OSC 133 marks as (kind, x, y), oldest first, at most MAX_MARKS."""
        cdef int i
        cdef Mark m
        out = []
        for i in range(self.nmarks):
            m = self.marks[(self.marks_head + i) % MAX_MARKS]
            out.append((chr(m.kind), m.x, m.y))
        return out

    @property
    def memory_usage(self):
        """Bytes held in C allocations: both screens, scrollback, combining-mark table."""
        cdef size_t total = 2 * <size_t>self.nrows * (sizeof(Row) + self.ncols * sizeof(Cell))
        cdef int i
        cdef Line* line
        total += self.ncols + <size_t>self.sb_cap * sizeof(Line)
        for i in range(self.sb_len):
            line = &self.sb[(self.sb_head + i) % self.sb_cap]
            total += <size_t>line.len * (line.packing if line.packing else sizeof(Cell))
        if self.comb_slots != NULL:
            total += COMB_SLOTS * sizeof(uint16_t) + COMB_CAP * MAX_COMBINING * sizeof(uint32_t)
        return total

    @property
    def screen(self):
        """The current screen through pyte's API."""
        return ScreenView(self.state())

    def feed(self, data):
        """Feed program output; never raises, and any chunking gives the same result."""
        cdef const unsigned char[::1] view = data
        cdef Py_ssize_t n = view.shape[0]
        if n == 0:
            return
        with nogil:
            self.feed_c(&view[0], n)

    def take_replies(self):
        out = (<char*>self.replies)[:self.nreplies]
        self.nreplies = 0
        return out

    def resize(self, int cols, int rows):
        self.resize_c(max(1, min(cols, MAX_DIMENSION)), max(1, min(rows, MAX_DIMENSION)))

    def snapshot_text(self, int scrollback=0):
        return render_text(self.state(scrollback), scrollback)

    def snapshot_ansi(self):
        return render_ansi(self.state(0))

    def snapshot_json(self, int scrollback=0):
        return render_json(self.state(scrollback), scrollback)

    # -- snapshots (with the GIL; not a hot path) ---------------------------------------------
    cdef list row_cells(self, const Cell* cells, int n):
        cdef list out = []
        cdef int i
        cdef const Cell* c
        for i in range(n):
            c = &cells[i]
            if c.ch == 0:
                text = ""
            else:
                text = chr(c.ch)
                if c.comb:
                    text += chr(self.comb_marks[c.comb][0])
                    if self.comb_marks[c.comb][1]:
                        text += chr(self.comb_marks[c.comb][1])
            out.append((text, c.fg, c.bg, c.flags))
        return out

    def state(self, int scrollback=-1):
        """A copy of the current state in the backend-neutral form the snapshots render."""
        cdef int y, i, first
        cdef Line* line
        lines = [self.row_cells(self.touch(y, self.ncols), self.ncols) for y in range(self.nrows)]
        primary = None
        if self.alt:
            self.swap_screens()
            primary = [self.row_cells(self.touch(y, self.ncols), self.ncols)
                       for y in range(self.nrows)]
            self.swap_screens()
        count = self.sb_len if scrollback < 0 else min(scrollback, self.sb_len)
        history = []
        first = self.sb_len - count
        for i in range(first, self.sb_len):
            line = &self.sb[(self.sb_head + i) % self.sb_cap]
            attrs = (line.attrs.fg, line.attrs.bg, line.attrs.flags)
            if line.packing == 1:
                history.append([(chr(c), *attrs) for c in (<uint8_t*>line.data)[:line.len]])
            elif line.packing == 4:
                history.append([(chr(c) if c else "", *attrs)
                                for c in (<uint32_t*>line.data)[:line.len]])
            else:
                history.append(self.row_cells(<Cell*>line.data, line.len))
        cdef Saved* s = &self.saved[0]
        modes = {
            "insert": self.m_insert, "lnm": self.m_lnm, "cursor_keys": self.m_cursor_keys,
            "reverse_video": self.m_reverse, "origin": self.m_origin,
            "autowrap": self.m_autowrap, "bracketed_paste": self.m_paste,
            "focus": self.m_focus, "sync": self.m_sync, "keypad": self.m_keypad,
            "mouse": self.mouse,
            "mouse_encoding": ENCODING_NAMES[self.mouse_encoding].decode(),
            "attrs": (self.fg, self.bg, self.flags),
            "charsets": chr(self.charsets[0]) + chr(self.charsets[1]),
            "shift_out": self.gl == 1,
        }
        return ScreenState(
            cols=self.ncols, rows=self.nrows, lines=lines,
            wrapped=[bool(self.grid[y].wrapped) for y in range(self.nrows)],
            cursor_x=self.x, cursor_y=self.y, pending_wrap=self.pending,
            cursor_visible=self.cursor_visible, cursor_shape=self.cursor_shape,
            title=self.title, modes=modes, alternate_screen=self.alt, primary_lines=primary,
            primary_cursor=(s.x, s.y, s.fg, s.bg, s.flags) if s.valid else (0, 0, 0, 0, 0),
            scroll_top=self.top, scroll_bottom=self.bottom, scrollback=history,
            tabs=[x for x in range(self.ncols) if self.tabs[x]],
            saved_cursor=self.saved_state(),
        )

    def saved_state(self):
        """The active screen's DECSC state, as ScreenState.saved_cursor."""
        cdef Saved* s = &self.saved[self.alt]
        if not s.valid:
            return (0, 0, 0, 0, 0, False, "BB", False)
        return (s.x, s.y, s.fg, s.bg, s.flags, bool(s.origin),
                chr(s.charsets[0]) + chr(s.charsets[1]), s.gl == 1)

    # -- state -------------------------------------------------------------------------------
    cdef void full_reset(self) noexcept nogil:
        cdef int y, x
        if self.alt:
            self.swap_screens()
        self.bg = 0
        self.erase_rows(0, self.nrows)
        self.swap_screens()
        self.erase_rows(0, self.nrows)
        self.swap_screens()
        self.alt = False
        self.x = self.y = 0
        self.pending = False
        self.fg = self.bg = 0
        self.flags = 0
        self.top = 0
        self.bottom = self.nrows - 1
        self.m_insert = self.m_lnm = self.m_cursor_keys = self.m_reverse = False
        self.m_origin = self.m_paste = self.m_focus = self.m_sync = self.m_keypad = False
        self.m_autowrap = True
        self.mouse = self.mouse_encoding = 0
        self.cursor_visible = True
        self.cursor_shape = 0
        for x in range(self.ncols):
            self.tabs[x] = x % 8 == 0
        self.charsets[0] = self.charsets[1] = 66
        self.gl = 0
        self.saved[0].valid = self.saved[1].valid = False
        self.last_char = 0

    cdef void swap_screens(self) noexcept nogil:
        cdef Row* g = self.grid
        self.grid = self.other
        self.other = g

    # -- byte loop ------------------------------------------------------------------------------
    cdef int feed_c(self, const unsigned char* data, Py_ssize_t n) noexcept nogil:
        """Feed n bytes; callable from Cython without the GIL. Returns 0."""
        cdef Py_ssize_t i = 0, j
        cdef unsigned char b
        cdef uint32_t cp
        while i < n:
            b = data[i]
            if b >= 0x20 and b < 0x7F and self.u_need == 0 and self.pstate == ST_GROUND:
                j = i + 1
                while j < n and data[j] >= 0x20 and data[j] < 0x7F:
                    j += 1
                self.put_ascii(data + i, j - i)
                i = j
                continue
            if b >= 0xC2 and self.u_need == 0 and self.pstate == ST_GROUND:
                # A complete, valid character: print it without the byte-wise decoder.
                j = decode_utf8(data + i, n - i, &cp)
                if j:
                    if cp >= 0xA0:
                        self.put_char(cp)
                    i += j
                    continue
            i += 1
            if self.u_need == 0:
                if b < 0x80:
                    self.process(b)
                elif 0xC2 <= b <= 0xDF:
                    self.u_need = 1
                    self.u_cp = b & 0x1F
                    self.u_lower = 0x80
                    self.u_upper = 0xBF
                elif 0xE0 <= b <= 0xEF:
                    # ED A0-BF (a surrogate) is invalid, but it is consumed whole and
                    # replaced byte by byte, as CPython's decoder does: the pure backend
                    # decodes with it, and both must agree at every chunk boundary.
                    self.u_need = 2
                    self.u_cp = b & 0x0F
                    self.u_lower = 0xA0 if b == 0xE0 else 0x80
                    self.u_upper = 0xBF
                elif 0xF0 <= b <= 0xF4:
                    self.u_need = 3
                    self.u_cp = b & 0x07
                    self.u_lower = 0x90 if b == 0xF0 else 0x80
                    self.u_upper = 0x8F if b == 0xF4 else 0xBF
                else:
                    self.process(0xFFFD)
            elif self.u_lower <= b <= self.u_upper:
                self.u_cp = (self.u_cp << 6) | (b & 0x3F)
                self.u_lower = 0x80
                self.u_upper = 0xBF
                self.u_need -= 1
                if self.u_need == 0:
                    if 0xD800 <= self.u_cp <= 0xDFFF:
                        self.process(0xFFFD)
                        self.process(0xFFFD)
                        self.process(0xFFFD)
                    else:
                        self.process(self.u_cp)
            else:
                # Maximal-subpart replacement, as Python's decoder: one U+FFFD, then the
                # offending byte is decoded afresh.
                if self.u_need == 1 and 0x360 <= self.u_cp <= 0x37F:
                    self.process(0xFFFD)  # ED A0-BF: one replacement per byte
                self.u_need = 0
                self.process(0xFFFD)
                i -= 1
        return 0

    cdef void process(self, uint32_t cp) noexcept nogil:
        cdef int st = self.pstate
        cdef uint8_t entry
        cdef int action
        if cp >= 0x80:
            if st == ST_OSC:
                self.osc_put(cp)
            elif st == ST_STRING or cp < 0xA0:
                pass
            elif st == ST_GROUND:
                self.put_char(cp)
            elif st == ST_ESCAPE or st == ST_ESC_INTER:
                self.pstate = ST_GROUND
            else:
                self.pstate = ST_CSI_IGNORE
            return
        entry = TABLE[st][cp]
        action = entry >> 4
        if action == A_KEEP:
            return
        self.pstate = entry & 0x0F
        if action == A_NONE:
            pass
        elif action == A_EXECUTE:
            self.execute(cp)
        elif action == A_PRINT:
            self.put_char(cp)
        elif action == A_COLLECT:
            if self.ninter < 2:
                self.inter[self.ninter] = <uint8_t>cp
                self.ninter += 1
        elif action == A_PARAM:
            self.param_char(cp)
        elif action == A_PRIVATE:
            self.private_marker = cp
        elif action == A_ESC_DISPATCH:
            self.esc_dispatch(cp)
        elif action == A_CSI_DISPATCH:
            self.csi_dispatch(cp)
        elif action == A_OSC_PUT:
            self.osc_put(cp)
        elif action == A_OSC_END:
            self.osc_dispatch()
        elif action == A_ENTER_ESC or action == A_OSC_END_ESC:
            if action == A_OSC_END_ESC:
                self.osc_dispatch()
            self.ninter = 0
        elif action == A_ENTER_CSI:
            self.ninter = 0
            self.nparams = 1
            self.nsub[0] = 1
            self.params[0][0] = -1
            self.private_marker = 0
        elif action == A_ENTER_OSC:
            self.ninter = 0
            self.strlen = 0
            self.overflow = False

    cdef void param_char(self, uint32_t cp) noexcept nogil:
        cdef int g = self.nparams - 1
        cdef int32_t v
        if cp == 59:  # ';'
            if self.nparams < MAX_PARAMS:
                self.params[self.nparams][0] = -1
                self.nsub[self.nparams] = 1
                self.nparams += 1
        elif cp == 58:  # ':'
            if self.nsub[g] < MAX_SUBPARAMS:
                self.params[g][self.nsub[g]] = -1
                self.nsub[g] += 1
        else:
            v = self.params[g][self.nsub[g] - 1]
            v = (v if v > 0 else 0) * 10 + <int32_t>(cp - 48)
            self.params[g][self.nsub[g] - 1] = v if v < MAX_PARAM_VALUE else MAX_PARAM_VALUE

    cdef void osc_put(self, uint32_t cp) noexcept nogil:
        if cp < 0x20 or cp == 0x7F or self.overflow:
            return
        if self.strlen < MAX_STRING:
            self.strbuf[self.strlen] = cp
            self.strlen += 1
        else:
            self.overflow = True

    # -- dispatch ------------------------------------------------------------------------------
    cdef void execute(self, uint32_t c) noexcept nogil:
        self.last_char = 0
        if c == 0x08:
            self.pending = False
            if self.x > 0:
                self.x -= 1
        elif c == 0x09:
            self.tab(1)
        elif c == 0x0A or c == 0x0B or c == 0x0C:
            self.pending = False
            self.index()
            if self.m_lnm:
                self.x = 0
        elif c == 0x0D:
            self.pending = False
            self.x = 0
        elif c == 0x0E:
            self.gl = 1
        elif c == 0x0F:
            self.gl = 0

    cdef void esc_dispatch(self, uint32_t ch) noexcept nogil:
        self.last_char = 0
        if self.ninter:
            if self.ninter == 1 and (self.inter[0] == 40 or self.inter[0] == 41):
                self.charsets[self.inter[0] == 41] = <uint8_t>ch
            elif self.ninter == 1 and self.inter[0] == 35 and ch == 56:
                self.decaln()
            return
        if ch == 68:  # D: IND
            self.pending = False
            self.index()
        elif ch == 69:  # E: NEL
            self.pending = False
            self.index()
            self.x = 0
        elif ch == 77:  # M: RI
            self.pending = False
            if self.y == self.top:
                self.scroll_down(self.top, self.bottom, 1)
            elif self.y > 0:
                self.y -= 1
        elif ch == 72:  # H: HTS
            self.tabs[self.x] = 1
        elif ch == 55:
            self.save_cursor()
        elif ch == 56:
            self.restore_cursor()
        elif ch == 61:
            self.m_keypad = True
        elif ch == 62:
            self.m_keypad = False
        elif ch == 99:  # c: RIS
            self.full_reset()

    cdef void osc_dispatch(self) noexcept nogil:
        cdef int i = 0, code = 0, n, k
        cdef uint32_t c
        if self.overflow:
            return
        while i < self.strlen and self.strbuf[i] != 59:
            c = self.strbuf[i]
            if c < 48 or c > 57 or i >= 5:
                return
            code = code * 10 + <int>(c - 48)
            i += 1
        if i == 0:
            return
        i += 1  # skip ';' (or step past the end when there is none)
        if code <= 2:
            n = 0
            for k in range(i, self.strlen):
                c = self.strbuf[k]
                if c < 0x20 or (0x7F <= c <= 0x9F):
                    continue
                if n == MAX_TITLE:
                    break
                if code != 1:
                    self.title_buf[n] = c
                if code != 2:
                    self.icon_buf[n] = c
                n += 1
            if code != 1:
                self.title_len = n
            if code != 2:
                self.icon_len = n
        elif code == 133 and i < self.strlen:
            k = (self.marks_head + self.nmarks) % MAX_MARKS
            self.marks[k].kind = self.strbuf[i]
            self.marks[k].x = self.x
            self.marks[k].y = self.y
            if self.nmarks < MAX_MARKS:
                self.nmarks += 1
            else:
                self.marks_head = (self.marks_head + 1) % MAX_MARKS

    cdef int param(self, int index, int default) noexcept nogil:
        """The index-th parameter, with ``default`` for a missing or zero value."""
        if index < self.nparams and self.params[index][0] > 0:
            return self.params[index][0]
        return default

    cdef void csi_dispatch(self, uint32_t final) noexcept nogil:
        cdef uint32_t priv = self.private_marker
        cdef int i, n
        if priv == 0 and self.ninter == 0:
            if final != 98:
                self.last_char = 0
            self.csi_plain(final)
        elif priv == 63 and self.ninter == 0 and (final == 104 or final == 108):
            for i in range(self.nparams):
                self.set_private_mode(self.params[i][0], final == 104)
        elif priv == 63 and self.ninter == 0 and final == 110 and self.param(0, 0) == 6:
            self.reply_cpr(True)
        elif priv == 62 and self.ninter == 0 and final == 99 and self.param(0, 0) == 0:
            self.reply_bytes(DA2_BYTES, DA2_LEN)
        elif priv == 0 and self.ninter == 1 and self.inter[0] == 32 and final == 113:
            n = self.params[0][0] if self.params[0][0] > 0 else 0
            if n <= 6:
                self.cursor_shape = n
        elif priv == 0 and self.ninter == 1 and self.inter[0] == 33 and final == 112:
            self.soft_reset()

    cdef void csi_plain(self, uint32_t final) noexcept nogil:
        cdef int n = self.param(0, 1)
        if final == 64:  # @ ICH
            self.insert_chars(n)
        elif final == 65:  # A CUU
            self.move_up(n)
        elif final == 66:  # B CUD
            self.move_down(n)
        elif final == 67 or final == 97:  # C CUF, a HPR
            self.move_x(n)
        elif final == 68:  # D CUB
            self.move_x(-n)
        elif final == 69:  # E CNL
            self.move_down(n)
            self.x = 0
        elif final == 70:  # F CPL
            self.move_up(n)
            self.x = 0
        elif final == 71 or final == 96:  # G CHA, ` HPA
            self.move_x(n - 1 - self.x)
        elif final == 72 or final == 102:  # H CUP, f HVP
            self.goto(self.param(1, 1) - 1, n - 1)
        elif final == 73:  # I CHT
            self.tab(n)
        elif final == 74:  # J ED
            self.erase_display(self.param(0, 0))
        elif final == 75:  # K EL
            self.erase_line(self.param(0, 0))
        elif final == 76:  # L IL
            if self.top <= self.y <= self.bottom:
                self.scroll_down(self.y, self.bottom, n)
                self.x = 0
                self.pending = False
        elif final == 77:  # M DL
            if self.top <= self.y <= self.bottom:
                self.delete_lines(n)
                self.x = 0
                self.pending = False
        elif final == 80:  # P DCH
            self.delete_chars(n)
        elif final == 83:  # S SU
            self.scroll_up(self.top, self.bottom, n)
        elif final == 84:  # T SD (one parameter only: five are xterm mouse highlighting)
            if self.nparams == 1:
                self.scroll_down(self.top, self.bottom, n)
        elif final == 88:  # X ECH
            self.pending = False
            self.erase_cells(self.y, self.x, min(self.x + n, self.ncols))
        elif final == 90:  # Z CBT
            self.back_tab(n)
        elif final == 98:  # b REP
            self.repeat(n)
        elif final == 99:  # c DA1
            if self.param(0, 0) == 0:
                self.reply_bytes(DA1_BYTES, DA1_LEN)
        elif final == 100:  # d VPA
            self.goto(self.x, n - 1)
        elif final == 101:  # e VPR
            self.pending = False
            self.y = min(self.y + n, self.nrows - 1)
        elif final == 103:  # g TBC
            self.clear_tabs(self.param(0, 0))
        elif final == 104 or final == 108:  # h SM, l RM
            self.set_ansi_modes(final == 104)
        elif final == 109:  # m SGR
            self.sgr()
        elif final == 110:  # n DSR
            if self.param(0, 0) == 5:
                self.reply_bytes(DSR_BYTES, DSR_LEN)
            elif self.param(0, 0) == 6:
                self.reply_cpr(False)
        elif final == 114:  # r DECSTBM
            self.set_margins()
        elif final == 115:  # s
            self.save_cursor()
        elif final == 117:  # u
            self.restore_cursor()

    # -- replies ---------------------------------------------------------------------------
    cdef void reply_bytes(self, const char* data, int n) noexcept nogil:
        if self.nreplies + n <= MAX_REPLIES:
            memcpy(self.replies + self.nreplies, data, n)
            self.nreplies += n

    cdef int format_int(self, char* out, int v) noexcept nogil:
        cdef char tmp[12]
        cdef int n = 0, k
        if v == 0:
            tmp[n] = 48
            n += 1
        while v > 0:
            tmp[n] = <char>(48 + v % 10)
            v //= 10
            n += 1
        for k in range(n):
            out[k] = tmp[n - 1 - k]
        return n

    cdef void reply_cpr(self, bint private) noexcept nogil:
        cdef char buf[32]
        cdef int n = 0
        cdef int row = self.y - (self.top if self.m_origin else 0)
        buf[0] = 27
        buf[1] = 91
        n = 2
        if private:
            buf[n] = 63
            n += 1
        n += self.format_int(buf + n, row + 1)
        buf[n] = 59
        n += 1
        n += self.format_int(buf + n, self.x + 1)
        buf[n] = 82
        n += 1
        self.reply_bytes(buf, n)

    # -- modes -------------------------------------------------------------------------------
    cdef void set_private_mode(self, int mode, bint on) noexcept nogil:
        if mode == 1:
            self.m_cursor_keys = on
        elif mode == 5:
            self.m_reverse = on
        elif mode == 66:
            self.m_keypad = on
        elif mode == 1004:
            self.m_focus = on
        elif mode == 2004:
            self.m_paste = on
        elif mode == 2026:
            self.m_sync = on
        elif mode == 6:
            self.m_origin = on
            self.goto(0, 0)
        elif mode == 7:
            self.m_autowrap = on
            if not on:
                self.pending = False
        elif mode == 25:
            self.cursor_visible = on
        elif mode == 9 or mode == 1000 or mode == 1002 or mode == 1003:
            self.mouse = mode if on else 0
        elif mode == 1005 or mode == 1006 or mode == 1015:
            if on:
                self.mouse_encoding = encoding_id(mode)
            elif self.mouse_encoding == encoding_id(mode):
                self.mouse_encoding = 0
        elif mode == 1048:
            if on:
                self.save_cursor()
            else:
                self.restore_cursor()
        elif mode == 47 or mode == 1047 or mode == 1049:
            self.switch_screen(mode, on)

    cdef void switch_screen(self, int mode, bint on) noexcept nogil:
        if on == self.alt:
            return  # already there: nothing is saved, switched or cleared (xterm, tmux)
        if on and mode == 1049:
            self.save_cursor()
        if not on and mode == 1047:
            self.erase_rows(0, self.nrows)
        self.swap_screens()
        self.alt = on
        if on and mode == 1049:
            self.erase_rows(0, self.nrows)
        if not on and mode == 1049:
            self.restore_cursor()

    cdef void set_ansi_modes(self, bint on) noexcept nogil:
        cdef int i
        for i in range(self.nparams):
            if self.params[i][0] == 4:
                self.m_insert = on
            elif self.params[i][0] == 20:
                self.m_lnm = on

    cdef void soft_reset(self) noexcept nogil:
        self.m_insert = self.m_origin = False
        self.cursor_visible = True
        self.fg = self.bg = 0
        self.flags = 0
        self.top = 0
        self.bottom = self.nrows - 1
        self.charsets[0] = self.charsets[1] = 66
        self.gl = 0
        self.saved[self.alt].valid = False

    cdef void save_cursor(self) noexcept nogil:
        cdef Saved* s = &self.saved[self.alt]
        s.x = self.x
        s.y = self.y
        s.fg = self.fg
        s.bg = self.bg
        s.flags = self.flags
        s.origin = self.m_origin
        s.charsets[0] = self.charsets[0]
        s.charsets[1] = self.charsets[1]
        s.gl = self.gl
        s.valid = True

    cdef void restore_cursor(self) noexcept nogil:
        cdef Saved* s = &self.saved[self.alt]
        if not s.valid:
            s.x = s.y = 0
            s.fg = s.bg = 0
            s.flags = 0
            s.origin = False
            s.charsets[0] = s.charsets[1] = 66
            s.gl = 0
        self.fg = s.fg
        self.bg = s.bg
        self.flags = s.flags
        self.m_origin = s.origin
        self.charsets[0] = s.charsets[0]
        self.charsets[1] = s.charsets[1]
        self.gl = s.gl
        self.x = min(s.x, self.ncols - 1)
        self.y = min(s.y, self.nrows - 1)
        self.pending = False

    # -- printing --------------------------------------------------------------------------------
    cdef void put_ascii(self, const unsigned char* data, Py_ssize_t n) noexcept nogil:
        """A run of printable ASCII: whole-row writes unless a charset or IRM needs care."""
        cdef Py_ssize_t i = 0, k, m
        cdef Cell* row
        cdef Cell tmpl
        cdef int x, used, cols = self.ncols
        tmpl.comb = 0
        tmpl.fg = self.fg
        tmpl.bg = self.bg
        tmpl.flags = self.flags
        if self.m_insert or self.charsets[self.gl] == 48:
            for i in range(n):
                self.put_char(data[i])
            return
        while i < n:
            if self.pending:
                self.wrap()
            x = self.x
            k = min(n - i, <Py_ssize_t>(cols - x))
            used = self.grid[self.y].used
            row = self.touch(self.y, x)
            if x < used and row[x].ch == 0 and x > 0:
                blank_cells(&row[x - 1], 1, 0)
            if x + k < used and row[x + k].ch == 0:
                blank_cells(&row[x + k], 1, 0)
            for m in range(k):
                tmpl.ch = data[i + m]
                row[x + m] = tmpl
            i += k
            x += <int>k
            if x > used:
                self.grid[self.y].used = x
            if x >= cols:
                self.x = cols - 1
                self.pending = self.m_autowrap
                if not self.m_autowrap and i < n:
                    # Without autowrap the rest of the run overwrites the last column.
                    row[cols - 1].ch = data[n - 1]
                    i = n
            else:
                self.x = x
        self.last_char = data[n - 1]

    cdef void put_char(self, uint32_t cp) noexcept nogil:
        cdef uint32_t orig = cp
        cdef int width, x, cols = self.ncols
        cdef Cell* row
        if 0x5F <= cp <= 0x7E and self.charsets[self.gl] == 48:
            cp = DEC_MAP[cp - 0x5F]
        width = 1 if orig < 0x300 else WIDTH[orig]
        if width == 0:
            self.combine(cp)
            return
        if width == 2 and cols < 2:
            return
        if self.pending:
            self.wrap()
        if width == 2 and self.x == cols - 1:
            if self.m_autowrap:
                self.wrap()
            else:
                self.x = cols - 2
        x = self.x
        row = self.touch(self.y, cols if self.m_insert else min(x + 3, cols))
        if self.m_insert:
            self.split_middle(row, x)
            memmove(&row[x + width], &row[x], (cols - x - width) * sizeof(Cell))
            blank_cells(&row[x], width, 0)
            self.clip_right(row)
        self.split(row, x)
        if width == 2:
            self.split(row, x + 1)
            self.set_cell(&row[x + 1], 0)
        self.set_cell(&row[x], cp)
        self.last_char = cp
        x += width
        if x >= cols:
            self.x = cols - 1
            self.pending = self.m_autowrap
        else:
            self.x = x

    cdef inline void set_cell(self, Cell* c, uint32_t cp) noexcept nogil:
        c.ch = cp
        c.comb = 0
        c.fg = self.fg
        c.bg = self.bg
        c.flags = self.flags

    cdef inline void split(self, Cell* row, int x) noexcept nogil:
        """Blank the other half of a wide character that a write to column x cuts in two."""
        if row[x].ch == 0 and x > 0:
            blank_cells(&row[x - 1], 2, 0)
        elif x + 1 < self.ncols and row[x + 1].ch == 0:
            blank_cells(&row[x + 1], 1, 0)

    cdef void split_middle(self, Cell* row, int x) noexcept nogil:
        """Before a shift right at x: a wide character cut in its middle is blanked whole."""
        if row[x].ch == 0 and x > 0:
            blank_cells(&row[x - 1], 2, 0)

    cdef void clip_right(self, Cell* row) noexcept nogil:
        """After a shift right, a wide character's left half may not stay in the last column."""
        cdef uint32_t ch = row[self.ncols - 1].ch
        if ch >= 0x300 and WIDTH[ch] == 2:
            blank_cells(&row[self.ncols - 1], 1, 0)

    cdef void wrap(self) noexcept nogil:
        self.grid[self.y].wrapped = True
        self.pending = False
        self.x = 0
        self.index()

    cdef void combine(self, uint32_t cp) noexcept nogil:
        cdef int x = self.x if self.pending else self.x - 1
        cdef Cell* c
        cdef Cell* row
        if x < 0:
            return
        row = self.touch(self.y, x + 1)
        if row[x].ch == 0 and x > 0:
            x -= 1
        c = &row[x]
        if c.ch == 0:
            return
        if c.comb == 0:
            c.comb = self.intern_marks(cp, 0)
        elif self.comb_marks[c.comb][1] == 0:
            c.comb = self.intern_marks(self.comb_marks[c.comb][0], cp) or c.comb

    cdef uint16_t intern_marks(self, uint32_t first, uint32_t second) noexcept nogil:
        """The index of a combining-mark sequence, added if new; 0 when the table is full."""
        cdef uint32_t h
        cdef uint16_t i
        if self.comb_slots == NULL:
            self.comb_slots = <uint16_t*>calloc(COMB_SLOTS, sizeof(uint16_t))
            self.comb_marks = <uint32_t (*)[MAX_COMBINING]>malloc(
                COMB_CAP * MAX_COMBINING * sizeof(uint32_t))
            if self.comb_slots == NULL or self.comb_marks == NULL:
                free(self.comb_slots)
                free(self.comb_marks)
                self.comb_slots = NULL
                self.comb_marks = NULL
                return 0
            self.comb_len = 1
        h = (first * 2654435761u ^ second * 40503u) & (COMB_SLOTS - 1)
        while True:
            i = self.comb_slots[h]
            if i == 0:
                break
            if self.comb_marks[i][0] == first and self.comb_marks[i][1] == second:
                return i
            h = (h + 1) & (COMB_SLOTS - 1)
        if self.comb_len == COMB_CAP:
            return 0
        i = <uint16_t>self.comb_len
        self.comb_len += 1
        self.comb_marks[i][0] = first
        self.comb_marks[i][1] = second
        self.comb_slots[h] = i
        return i

    cdef void repeat(self, int n) noexcept nogil:
        cdef int i
        cdef uint32_t ch = self.last_char
        if ch:
            for i in range(min(n, self.ncols * self.nrows)):
                self.put_char(ch)

    # -- movement ------------------------------------------------------------------------------
    cdef void goto(self, int x, int y) noexcept nogil:
        """Absolute move; y is relative to the scroll region in origin mode."""
        self.pending = False
        if self.m_origin:
            y = min(y + self.top, self.bottom)
        self.x = min(max(x, 0), self.ncols - 1)
        self.y = min(max(y, 0), self.nrows - 1)

    cdef void move_up(self, int n) noexcept nogil:
        self.pending = False
        cdef int limit = self.top if self.y >= self.top else 0
        self.y = max(self.y - n, limit)

    cdef void move_down(self, int n) noexcept nogil:
        self.pending = False
        cdef int limit = self.bottom if self.y <= self.bottom else self.nrows - 1
        self.y = min(self.y + n, limit)

    cdef void move_x(self, int n) noexcept nogil:
        self.pending = False
        self.x = min(max(self.x + n, 0), self.ncols - 1)

    cdef void tab(self, int n) noexcept nogil:
        # Unlike other moves, HT keeps a pending wrap (xterm).
        cdef int x = self.x, i
        for i in range(min(n, self.ncols)):
            x += 1
            while x < self.ncols - 1 and not self.tabs[x]:
                x += 1
            x = min(x, self.ncols - 1)
        self.x = x

    cdef void back_tab(self, int n) noexcept nogil:
        self.pending = False
        cdef int x = self.x, i
        for i in range(min(n, self.ncols)):
            x -= 1
            while x > 0 and not self.tabs[x]:
                x -= 1
            x = max(x, 0)
        self.x = x

    cdef void clear_tabs(self, int mode) noexcept nogil:
        if mode == 0:
            self.tabs[self.x] = 0
        elif mode == 3:
            memset(self.tabs, 0, self.ncols)

    cdef void set_margins(self) noexcept nogil:
        cdef int top = self.param(0, 1) - 1
        cdef int bottom = min(self.param(1, self.nrows), self.nrows) - 1
        if top < bottom:
            self.top = top
            self.bottom = bottom
            self.goto(0, 0)

    # -- scrolling and editing -------------------------------------------------------------
    cdef void index(self) noexcept nogil:
        if self.y == self.bottom:
            self.scroll_up(self.top, self.bottom, 1)
        elif self.y < self.nrows - 1:
            self.y += 1

    cdef void push_scrollback(self, int y) noexcept nogil:
        """Keep row y, scrolled off the primary screen: a trimmed, packed when uniform, copy."""
        cdef Row* row = &self.grid[y]
        cdef const Cell* cells
        cdef int n, cap, i, packing = 0
        cdef uint32_t ch
        cdef uint64_t w0, w1, v0, v1, diff = 0
        cdef bint wide = False
        cdef uint8_t ascii[MAX_DIMENSION]
        cdef Line* line
        cdef Line* grown
        cdef void* copy = NULL
        if row.fill != 0:
            self.touch(y, self.ncols)
        cells = row.cells
        n = trimmed_len(cells, row.used)
        if self.sb_len == self.sb_cap and self.sb_cap < self.sb_limit:
            # Grow the ring (only ever while it has not wrapped, so sb_head is 0).
            cap = min(max(self.sb_cap * 2, 64), self.sb_limit)
            grown = <Line*>realloc(self.sb, cap * sizeof(Line))
            if grown == NULL:
                return
            self.sb = grown
            self.sb_cap = cap
        if n:
            # One branch-free pass: are all cells ASCII with the first cell's attributes?
            memcpy(&w0, &cells[0], 8)
            memcpy(&w1, (<const char*>&cells[0]) + 8, 8)
            for i in range(n):
                memcpy(&v0, &cells[i], 8)
                memcpy(&v1, (<const char*>&cells[i]) + 8, 8)
                diff |= ((v0 ^ w0) >> 32) | (v1 ^ w1)
                ch = cells[i].ch
                wide |= (ch - 1u) >= 0x7Fu
                ascii[i] = <uint8_t>ch
            packing = 0 if diff or cells[0].comb else (4 if wide else 1)
            copy = malloc((<size_t>n) * (packing if packing else sizeof(Cell)))
            if copy == NULL:
                return
            if packing == 1:
                memcpy(copy, ascii, n)
            elif packing == 4:
                for i in range(n):
                    (<uint32_t*>copy)[i] = cells[i].ch
            else:
                memcpy(copy, cells, n * sizeof(Cell))
        if self.sb_len == self.sb_cap:
            line = &self.sb[self.sb_head]
            free(line.data)
            self.sb_head = (self.sb_head + 1) % self.sb_cap
        else:
            line = &self.sb[(self.sb_head + self.sb_len) % self.sb_cap]
            self.sb_len += 1
        line.data = copy
        line.len = n
        line.packing = packing if n else 0
        if n:
            line.attrs = cells[0]
        else:
            memset(&line.attrs, 0, sizeof(Cell))

    cdef void clear_scrollback(self) noexcept nogil:
        cdef int i
        for i in range(self.sb_len):
            free(self.sb[(self.sb_head + i) % self.sb_cap].data)
        self.sb_len = 0
        self.sb_head = 0

    cdef void clear_row(self, Row* row, uint32_t bg) noexcept nogil:
        row.used = 0
        row.fill = bg
        row.wrapped = False

    cdef void scroll_up(self, int top, int bottom, int n) noexcept nogil:
        cdef bint keep = top == 0 and not self.alt and self.sb_limit > 0
        cdef Row row
        cdef int i
        n = min(n, bottom - top + 1)
        for i in range(n):
            if keep:
                self.push_scrollback(top)
            row = self.grid[top]
            memmove(&self.grid[top], &self.grid[top + 1], (bottom - top) * sizeof(Row))
            self.clear_row(&row, self.bg)
            self.grid[bottom] = row

    cdef void scroll_down(self, int top, int bottom, int n) noexcept nogil:
        cdef Row row
        cdef int i
        n = min(n, bottom - top + 1)
        for i in range(n):
            row = self.grid[bottom]
            memmove(&self.grid[top + 1], &self.grid[top], (bottom - top) * sizeof(Row))
            self.clear_row(&row, self.bg)
            self.grid[top] = row

    cdef void delete_lines(self, int n) noexcept nogil:
        cdef Row row
        cdef int i
        n = min(n, self.bottom - self.y + 1)
        for i in range(n):
            row = self.grid[self.y]
            memmove(&self.grid[self.y], &self.grid[self.y + 1],
                    (self.bottom - self.y) * sizeof(Row))
            self.clear_row(&row, self.bg)
            self.grid[self.bottom] = row

    cdef void erase_cells(self, int y, int start, int stop) noexcept nogil:
        cdef Cell* row
        if start >= stop:
            return
        row = self.touch(y, self.ncols)
        if start > 0:
            self.split(row, start)
        if stop < self.ncols:
            self.split(row, stop - 1)
        blank_cells(&row[start], stop - start, self.bg)

    cdef void erase_rows(self, int start, int stop) noexcept nogil:
        cdef int y
        for y in range(start, stop):
            self.clear_row(&self.grid[y], self.bg)

    cdef void erase_line(self, int mode) noexcept nogil:
        self.pending = False
        if mode == 0:
            self.erase_cells(self.y, self.x, self.ncols)
            self.grid[self.y].wrapped = False
        elif mode == 1:
            self.erase_cells(self.y, 0, self.x + 1)
        elif mode == 2:
            self.erase_rows(self.y, self.y + 1)

    cdef void erase_display(self, int mode) noexcept nogil:
        self.pending = False
        if mode == 0:
            self.erase_cells(self.y, self.x, self.ncols)
            self.grid[self.y].wrapped = False
            self.erase_rows(self.y + 1, self.nrows)
        elif mode == 1:
            self.erase_rows(0, self.y)
            self.erase_cells(self.y, 0, self.x + 1)
        elif mode == 2:
            self.erase_rows(0, self.nrows)
        elif mode == 3:
            self.clear_scrollback()

    cdef void insert_chars(self, int n) noexcept nogil:
        self.pending = False
        cdef Cell* row = self.touch(self.y, self.ncols)
        cdef int x = self.x, cols = self.ncols
        n = min(n, cols - x)
        self.split_middle(row, x)
        memmove(&row[x + n], &row[x], (cols - x - n) * sizeof(Cell))
        blank_cells(&row[x], n, self.bg)
        self.clip_right(row)

    cdef void delete_chars(self, int n) noexcept nogil:
        self.pending = False
        cdef Cell* row = self.touch(self.y, self.ncols)
        cdef int x = self.x, cols = self.ncols
        n = min(n, cols - x)
        self.split(row, x)
        if x + n < cols:
            self.split(row, x + n)
        memmove(&row[x], &row[x + n], (cols - x - n) * sizeof(Cell))
        blank_cells(&row[cols - n], n, self.bg)

    cdef void decaln(self) noexcept nogil:
        cdef int y, x
        cdef Cell* row
        self.top = 0
        self.bottom = self.nrows - 1
        for y in range(self.nrows):
            self.clear_row(&self.grid[y], 0)
            row = self.touch(y, self.ncols)
            for x in range(self.ncols):
                row[x].ch = 69
        self.goto(0, 0)

    # -- SGR -----------------------------------------------------------------------------------
    cdef void sgr(self) noexcept nogil:
        cdef int i = 0, n = self.nparams, p, need, k
        cdef int32_t color
        cdef int32_t sub[5]
        while i < n:
            p = self.params[i][0] if self.params[i][0] > 0 else 0
            if p == 38 or p == 48 or p == 58:
                if self.nsub[i] > 1:
                    color = color_from(&self.params[i][1], self.nsub[i] - 1, True)
                else:
                    # Semicolon form: the colour's parts are the following parameters.
                    k = self.params[i + 1][0] if i + 1 < n else -1
                    need = 2 if k == 5 else (4 if k == 2 else 1)
                    need = min(need, n - i - 1)
                    for k in range(need):
                        sub[k] = self.params[i + 1 + k][0]
                    color = color_from(sub, need, False)
                    i += need
                if color >= 0 and p == 38:
                    self.fg = <uint32_t>color
                elif color >= 0 and p == 48:
                    self.bg = <uint32_t>color
            elif p == 4 and self.nsub[i] > 1:
                if self.params[i][1] > 0:
                    self.flags |= ATTR_UNDERLINE
                else:
                    self.flags &= ~ATTR_UNDERLINE
            else:
                self.sgr_simple(p)
            i += 1

    cdef void sgr_simple(self, int p) noexcept nogil:
        if p == 0:
            self.fg = self.bg = 0
            self.flags = 0
        elif p == 1:
            self.flags |= ATTR_BOLD
        elif p == 2:
            self.flags |= ATTR_FAINT
        elif p == 3:
            self.flags |= ATTR_ITALIC
        elif p == 4 or p == 21:
            self.flags |= ATTR_UNDERLINE
        elif p == 5 or p == 6:
            self.flags |= ATTR_BLINK
        elif p == 7:
            self.flags |= ATTR_REVERSE
        elif p == 8:
            self.flags |= ATTR_CONCEAL
        elif p == 9:
            self.flags |= ATTR_STRIKE
        elif p == 22:
            self.flags &= ~(ATTR_BOLD | ATTR_FAINT)
        elif p == 23:
            self.flags &= ~ATTR_ITALIC
        elif p == 24:
            self.flags &= ~ATTR_UNDERLINE
        elif p == 25:
            self.flags &= ~ATTR_BLINK
        elif p == 27:
            self.flags &= ~ATTR_REVERSE
        elif p == 28:
            self.flags &= ~ATTR_CONCEAL
        elif p == 29:
            self.flags &= ~ATTR_STRIKE
        elif 30 <= p <= 37:
            self.fg = COLOR_INDEXED | (p - 30)
        elif p == 39:
            self.fg = 0
        elif 40 <= p <= 47:
            self.bg = COLOR_INDEXED | (p - 40)
        elif p == 49:
            self.bg = 0
        elif 90 <= p <= 97:
            self.fg = COLOR_INDEXED | (p - 82)
        elif 100 <= p <= 107:
            self.bg = COLOR_INDEXED | (p - 92)

    # -- resize ----------------------------------------------------------------------------------
    cdef int resize_c(self, int cols, int rows) except -1:
        cdef Row* fresh
        cdef uint8_t* fresh_tabs
        cdef int s, y, excess, drop, used, cursor_y
        cdef Row* old
        if cols == self.ncols and rows == self.nrows:
            return 0
        fresh_tabs = <uint8_t*>malloc(cols)
        if fresh_tabs == NULL:
            raise MemoryError()
        for y in range(cols):
            fresh_tabs[y] = self.tabs[y] if y < self.ncols else y % 8 == 0
        free(self.tabs)
        self.tabs = fresh_tabs
        for s in range(2):
            # s == 0: the active screen; the screens are swapped between the two passes.
            fresh = self.alloc_screen(cols, rows)
            for y in range(self.nrows):
                self.touch(y, self.ncols)
            used = self.nrows
            drop = 0
            cursor_y = self.y if s == 0 else 0
            if rows < self.nrows:
                # Drop blank rows below the cursor first, then push top rows out, as xterm.
                excess = self.nrows - rows
                while excess and used - 1 > cursor_y and \
                        trimmed_len(self.grid[used - 1].cells, self.ncols) == 0:
                    used -= 1
                    excess -= 1
                drop = excess
                for y in range(drop):
                    if (s == 0) != self.alt and self.sb_limit > 0:
                        self.push_scrollback(y)
            if s == 0:
                self.y = max(self.y - drop, 0)
            for y in range(rows):
                if drop + y < used:
                    old = &self.grid[drop + y]
                    fresh[y].used = min(cols, self.ncols)
                    memcpy(fresh[y].cells, old.cells, fresh[y].used * sizeof(Cell))
                    if cols < self.ncols and old.cells[cols].ch == 0:
                        blank_cells(&fresh[y].cells[cols - 1], 1, 0)
                    fresh[y].wrapped = old.wrapped
            self.free_screen(self.grid, self.nrows)
            self.grid = fresh
            self.swap_screens()
        self.ncols = cols
        self.nrows = rows
        self.top = 0
        self.bottom = rows - 1
        self.x = min(self.x, cols - 1)
        self.y = min(self.y, rows - 1)
        self.pending = False
        for s in range(2):
            self.saved[s].x = min(self.saved[s].x, cols - 1)
            self.saved[s].y = min(self.saved[s].y, rows - 1)
        return 0


cdef inline int encoding_id(int mode) noexcept nogil:
    return 1 if mode == 1005 else (2 if mode == 1006 else 3)


# Fixed replies, as C strings so that the nogil loop can copy them.
cdef bytes _DA1 = DA1_REPLY
cdef bytes _DA2 = DA2_REPLY
cdef bytes _DSR = DSR_OK_REPLY
cdef const char* DA1_BYTES = _DA1
cdef const char* DA2_BYTES = _DA2
cdef const char* DSR_BYTES = _DSR
cdef int DA1_LEN = len(_DA1)
cdef int DA2_LEN = len(_DA2)
cdef int DSR_LEN = len(_DSR)
