# The compiled emulator engine: C state only, fed without the GIL.
# Values shared with ptyd/emulator.py (attribute bits, colour tags, limits) must stay equal.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t

cdef enum:
    ATTR_BOLD = 1
    ATTR_FAINT = 2
    ATTR_ITALIC = 4
    ATTR_UNDERLINE = 8
    ATTR_BLINK = 16
    ATTR_REVERSE = 32
    ATTR_CONCEAL = 64
    ATTR_STRIKE = 128
    COLOR_INDEXED = 0x1000000
    COLOR_RGB = 0x2000000

cdef enum:
    MAX_PARAMS = 32
    MAX_SUBPARAMS = 8
    MAX_PARAM_VALUE = 65535
    MAX_STRING = 4096
    MAX_TITLE = 256
    MAX_COMBINING = 2
    MAX_REPLIES = 4096
    MAX_MARKS = 256
    MAX_DIMENSION = 1000
    COMB_CAP = 4096                 # distinct combining-mark sequences per emulator
    COMB_SLOTS = 8192               # its hash index (power of two)
    COMB_SCAN_SHARE = 256           # cells a compaction may visit per new sequence asked for

# Parser states: vt100.net's DEC parser (DCS, SOS, PM and APC share one ignored STRING state).
cdef enum:
    ST_GROUND = 0
    ST_ESCAPE = 1
    ST_ESC_INTER = 2
    ST_CSI_ENTRY = 3
    ST_CSI_PARAM = 4
    ST_CSI_INTER = 5
    ST_CSI_IGNORE = 6
    ST_OSC = 7
    ST_STRING = 8
    N_STATES = 9

ctypedef struct Cell:                # 16 bytes: a run of cells is written with few stores
    uint32_t ch                     # base code point; 0 = right half of a wide character
    uint32_t fg
    uint32_t bg
    uint16_t flags
    uint16_t comb                   # combining marks: index into VtEmulator.comb_marks, 0 = none

ctypedef struct Row:                # one screen line
    Cell* cells                     # NULL until the first write (then ncols cells)
    int used                        # cells [used, ncols) are blank with background `fill`
    uint32_t fill                   # (lazy blanking: scrolling and erasing write no cells)
    bint wrapped                    # the line continues on the next one (autowrap)

ctypedef struct Line:               # one scrollback line, trailing blank cells not stored
    void* data                      # see `packing`
    int len
    int packing                     # 0: Cell[len]; 1 or 4: one uint8/uint32 code point per
    Cell attrs                      # cell, all cells with the attributes of `attrs`

ctypedef struct Saved:              # DECSC state
    int x, y
    uint32_t fg, bg
    uint16_t flags
    bint origin
    uint8_t charsets[2]
    int gl
    bint valid

ctypedef struct Mark:               # OSC 133 shell-integration mark
    uint32_t kind
    int x, y


cdef class VtEmulator:
    cdef int ncols, nrows
    cdef readonly unsigned long long generation  # feeds and resizes so far: views re-read on change
    cdef Row* grid                  # active screen
    cdef Cell* scratch              # ncols cells written instead of a row malloc could not give
    cdef Row* other                 # the inactive (primary or alternate) screen
    cdef uint8_t* tabs
    cdef bint alt
    cdef int x, y
    cdef bint pending
    cdef uint32_t fg, bg
    cdef uint16_t flags
    cdef int top, bottom
    cdef bint m_insert, m_lnm, m_cursor_keys, m_reverse, m_origin, m_autowrap
    cdef bint m_paste, m_focus, m_sync, m_keypad, cursor_visible
    cdef int mouse, mouse_encoding, cursor_shape
    cdef uint8_t charsets[2]
    cdef int gl
    cdef Saved saved[2]
    cdef uint32_t last_char
    # parser
    cdef int pstate
    cdef int32_t params[MAX_PARAMS][MAX_SUBPARAMS]
    cdef int nsub[MAX_PARAMS]
    cdef int nparams
    cdef uint32_t private_marker
    cdef uint8_t inter[2]
    cdef int ninter
    cdef uint32_t* strbuf           # MAX_STRING code points, allocated by the first OSC
    cdef int strlen
    cdef bint overflow
    # UTF-8 decoder
    cdef uint32_t u_cp, u_lower, u_upper
    cdef int u_need
    # outputs
    cdef unsigned char replies[MAX_REPLIES]
    cdef int nreplies
    cdef uint32_t title_buf[MAX_TITLE]
    cdef int title_len
    cdef uint32_t icon_buf[MAX_TITLE]
    cdef int icon_len
    cdef Mark marks[MAX_MARKS]
    cdef int nmarks, marks_head
    # interned combining-mark sequences (up to MAX_COMBINING marks each); when the table is
    # full, the sequences no cell uses any more are dropped (compact_marks)
    cdef uint32_t (*comb_marks)[MAX_COMBINING]
    cdef uint16_t* comb_slots
    cdef int comb_len
    cdef int comb_added  # new sequences asked for since the last compaction
    cdef long long comb_scan_cost  # cells the last compaction visited
    # scrollback ring
    cdef Line* sb
    cdef int sb_limit, sb_cap, sb_len, sb_head

    # The C-level entry point for other Cython code: no GIL, never fails, returns 0.
    cdef int feed_c(self, const unsigned char* data, Py_ssize_t n) noexcept nogil
    # Internal steps (declared here because every cdef method of the type must be).
    cdef Row* alloc_screen(self, int cols, int rows) except NULL
    cdef void free_screen(self, Row* screen, int rows) noexcept
    cdef inline Cell* touch(self, int y, int n) noexcept nogil
    cdef list row_cells(self, const Cell* cells, int n)
    cdef list screen_rows(self, const Row* screen)
    cdef void full_reset(self) noexcept nogil
    cdef void swap_screens(self) noexcept nogil
    cdef void process(self, uint32_t cp) noexcept nogil
    cdef void param_char(self, uint32_t cp) noexcept nogil
    cdef void osc_put(self, uint32_t cp) noexcept nogil
    cdef void execute(self, uint32_t c) noexcept nogil
    cdef void esc_dispatch(self, uint32_t ch) noexcept nogil
    cdef void osc_dispatch(self) noexcept nogil
    cdef int param(self, int index, int default) noexcept nogil
    cdef void csi_dispatch(self, uint32_t final) noexcept nogil
    cdef void csi_plain(self, uint32_t final) noexcept nogil
    cdef void reply_bytes(self, const char* data, int n) noexcept nogil
    cdef int format_int(self, char* out, int v) noexcept nogil
    cdef void reply_cpr(self, bint private) noexcept nogil
    cdef void set_private_mode(self, int mode, bint on) noexcept nogil
    cdef void switch_screen(self, int mode, bint on) noexcept nogil
    cdef void set_ansi_modes(self, bint on) noexcept nogil
    cdef void soft_reset(self) noexcept nogil
    cdef void save_cursor(self) noexcept nogil
    cdef void restore_cursor(self) noexcept nogil
    cdef void put_ascii(self, const unsigned char* data, Py_ssize_t n) noexcept nogil
    cdef void put_char(self, uint32_t cp) noexcept nogil
    cdef inline void set_cell(self, Cell* c, uint32_t cp) noexcept nogil
    cdef inline void split(self, Cell* row, int x) noexcept nogil
    cdef void split_middle(self, Cell* row, int x) noexcept nogil
    cdef void clip_right(self, Cell* row) noexcept nogil
    cdef void wrap(self) noexcept nogil
    cdef void combine(self, uint32_t cp) noexcept nogil
    cdef uint16_t intern_marks(self, uint32_t first, uint32_t second) noexcept nogil
    cdef void compact_marks(self) noexcept nogil
    cdef long long visit_marks(self, uint16_t* numbers, bint renumber) noexcept nogil
    cdef void repeat(self, int n) noexcept nogil
    cdef void goto(self, int x, int y) noexcept nogil
    cdef void move_up(self, int n) noexcept nogil
    cdef void move_down(self, int n) noexcept nogil
    cdef void move_x(self, int n) noexcept nogil
    cdef void tab(self, int n) noexcept nogil
    cdef void back_tab(self, int n) noexcept nogil
    cdef void clear_tabs(self, int mode) noexcept nogil
    cdef void set_margins(self) noexcept nogil
    cdef void index(self) noexcept nogil
    cdef void push_scrollback(self, int y) noexcept nogil
    cdef void clear_scrollback(self) noexcept nogil
    cdef int unpack_history_line(self, const Line* line, Row* row, int cols) except -1
    cdef void drop_newest_history(self, int n) noexcept nogil
    cdef void clear_row(self, Row* row, uint32_t bg) noexcept nogil
    cdef void scroll_up(self, int top, int bottom, int n) noexcept nogil
    cdef void scroll_down(self, int top, int bottom, int n) noexcept nogil
    cdef void delete_lines(self, int n) noexcept nogil
    cdef void erase_cells(self, int y, int start, int stop) noexcept nogil
    cdef void erase_rows(self, int start, int stop) noexcept nogil
    cdef void erase_line(self, int mode) noexcept nogil
    cdef void erase_display(self, int mode) noexcept nogil
    cdef void insert_cells(self, int y, int x, int n) noexcept nogil
    cdef void delete_cells(self, int y, int x, int n) noexcept nogil
    cdef void shift_columns(self, int x, int n, bint is_insert) noexcept nogil
    cdef void decaln(self) noexcept nogil
    cdef void sgr(self) noexcept nogil
    cdef void sgr_simple(self, int p) noexcept nogil
    cdef int resize_c(self, int cols, int rows) except -1
