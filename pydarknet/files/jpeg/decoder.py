"""The file's markers and segments in the order stb_image reads them (SOI, tables, the frame, each scan, EOI),
each scan handed to the kernel of its kind (baseline.py, progressive.py), the blocks to idct.py, the planes to
color.py; and the public functions."""
from __future__ import annotations

import numpy as np

from .baseline import _decode_baseline_scan
from .color import _assemble
from .huffman import _HT_LEN, _build_huffman
from .idct import _idct_all
from .progressive import _decode_ac_first_scan, _decode_ac_refine_scan, _decode_dc_first_scan, _decode_dc_refine_scan
from .tables import (_F_COFF, _F_CW, _F_H, _F_H2, _F_HA, _F_HD, _F_POFF, _F_TQ, _F_V, _F_W2, _F_X, _F_Y, _KERNEL_ERRORS,
                     _MODE_CMYK, _MODE_GREY, _MODE_RGB, _MODE_YCC, _MODE_YCCK, _NF, _NO_MARKER, _OK, _ZIGZAG)


class JPEGError(ValueError):
    """A JPEG file that cannot be decoded.

    ``unsupported`` is True when the file looks valid but uses a coding
    process stb_image does not implement (the caller may try another decoder).
    """

    def __init__(self, message: str, unsupported: bool = False):
        super().__init__(message)
        self.unsupported = unsupported



_SOF_NAMES = {
    0xC3: "lossless (SOF3)",
    0xC5: "hierarchical differential sequential (SOF5)",
    0xC6: "hierarchical differential progressive (SOF6)",
    0xC7: "hierarchical differential lossless (SOF7)",
    0xC9: "arithmetic coding (SOF9)",
    0xCA: "arithmetic coding, progressive (SOF10)",
    0xCB: "arithmetic coding, lossless (SOF11)",
    0xCD: "arithmetic coding, differential sequential (SOF13)",
    0xCE: "arithmetic coding, differential progressive (SOF14)",
    0xCF: "arithmetic coding, differential lossless (SOF15)",
    0xCC: "arithmetic coding conditioning table (DAC)",
    0xDE: "hierarchical coding (DHP)",
    0xDF: "hierarchical coding (EXP)",
}


class _Decoder:
    """Marker-level state, mirroring the order in which stb reads the file."""

    def __init__(self, data: bytes, name: str):
        self.raw = data
        self.arr = np.frombuffer(data, dtype=np.uint8)
        self.n = len(data)
        self.pos = 0
        self.name = name
        self.marker = _NO_MARKER
        self.restart_interval = 0
        self.jfif = False
        self.app14 = -1
        self.progressive = False
        self.htab = np.zeros((8, _HT_LEN), dtype=np.int32)
        self.hdefined = [False] * 8
        self.dequant = np.zeros((4, 64), dtype=np.int64)
        self.qdefined = [False] * 4

    # -- errors -----------------------------------------------------------
    def corrupt(self, why: str) -> JPEGError:
        return JPEGError(f"{self.name}: corrupt JPEG: {why}")

    def unsupported(self, why: str) -> JPEGError:
        return JPEGError(f"{self.name}: unsupported JPEG feature: {why}", unsupported=True)

    # -- byte access (reads past the end give 0, like stb) ------------------
    def get8(self) -> int:
        if self.pos < self.n:
            b = self.raw[self.pos]
            self.pos += 1
            return b
        return 0

    def get16(self) -> int:
        hi = self.get8()
        return (hi << 8) | self.get8()

    def at_eof(self) -> bool:
        # stbi_load_from_memory's test.  (stbi_load on a FILE* relies on
        # feof(), which the fseek of a segment skip past the end clears: a
        # file whose last segment claims more bytes than remain then sends
        # stb scanning for a marker forever.  We fail instead.)
        return self.pos >= self.n

    def get_marker(self) -> int:
        """A pending marker from the entropy decoder, else 0xFF xx at pos.

        Returns _NO_MARKER (having consumed one byte) when pos is not 0xFF.
        """
        if self.marker != _NO_MARKER:
            m = self.marker
            self.marker = _NO_MARKER
            return m
        x = self.get8()
        if x != 0xFF:
            return _NO_MARKER
        while x == 0xFF:
            x = self.get8()
        return x

    def skip_to_ff(self) -> None:
        """Consume bytes until pos points at 0xFF (or the end of the file)."""
        p = self.raw.find(b"\xff", self.pos)
        self.pos = self.n if p < 0 else p

    # -- segments ------------------------------------------------------------
    def process_marker(self, m: int) -> None:
        if m == _NO_MARKER:
            raise self.corrupt("expected a marker")
        if m == 0xDD:  # DRI
            if self.get16() != 4:
                raise self.corrupt("bad DRI length")
            self.restart_interval = self.get16()
            return
        if m == 0xDB:  # DQT
            length = self.get16() - 2
            while length > 0:
                q = self.get8()
                p, t = q >> 4, q & 15
                if p not in (0, 1):
                    raise self.corrupt("bad DQT precision")
                if t > 3:
                    raise self.corrupt("bad DQT table id")
                table = self.dequant[t]
                for i in range(64):
                    table[_ZIGZAG[i]] = self.get16() if p else self.get8()
                self.qdefined[t] = True
                length -= 129 if p else 65
            if length != 0:
                raise self.corrupt("bad DQT length")
            return
        if m == 0xC4:  # DHT
            length = self.get16() - 2
            while length > 0:
                q = self.get8()
                tc, th = q >> 4, q & 15
                if tc > 1 or th > 3:
                    raise self.corrupt("bad DHT header")
                counts = np.array([self.get8() for _ in range(16)], dtype=np.int64)
                total = int(counts.sum())
                length -= 17
                if total > 256:
                    raise self.corrupt("Huffman table with more than 256 symbols")
                t = th + 4 * tc
                end = self.pos + total
                values = np.zeros(total, dtype=np.int64)  # zeros past the end of the file
                got = np.frombuffer(self.raw[self.pos:end], dtype=np.uint8)
                values[:len(got)] = got
                self.pos = end
                if _build_huffman(counts, values, self.htab[t]) < 0:
                    raise self.corrupt("bad Huffman code lengths")
                self.hdefined[t] = True
                length -= total
            if length != 0:
                raise self.corrupt("bad DHT length")
            return
        if 0xE0 <= m <= 0xEF or m == 0xFE:  # APPn, COM
            length = self.get16()
            if length < 2:
                raise self.corrupt("bad COM length" if m == 0xFE else "bad APP length")
            length -= 2
            start = self.pos
            seg = self.raw[start:start + length]
            if m == 0xE0 and length >= 5:
                if seg[:5] == b"JFIF\0":
                    self.jfif = True
            elif m == 0xEE and length >= 12:
                if seg[:6] == b"Adobe\0":
                    self.app14 = seg[11] if len(seg) > 11 else 0
            self.pos = start + length
            return
        if m in _SOF_NAMES:
            raise self.unsupported(_SOF_NAMES[m])
        if m in (0xC0, 0xC1, 0xC2):
            raise self.corrupt("second frame header")
        if m == 0xC8 or 0xF0 <= m <= 0xFD:
            raise self.unsupported(f"JPEG extension marker 0xFF{m:02X}")
        raise self.corrupt(f"unexpected marker 0xFF{m:02X}")

    def read_frame_header(self, m: int) -> None:
        lf = self.get16()
        if lf < 11:
            raise self.corrupt("bad SOF length")
        p = self.get8()
        if p != 8:
            raise self.unsupported(f"{p}-bit samples (only 8-bit is supported)")
        self.img_y = self.get16()
        if self.img_y == 0:
            raise self.unsupported("height defined by a DNL marker (height 0 in SOF)")
        self.img_x = self.get16()
        if self.img_x == 0:
            raise self.corrupt("width 0")
        c = self.get8()
        if c not in (1, 3, 4):
            raise self.corrupt(f"bad component count {c}")
        self.img_n = c
        if lf != 8 + 3 * c:
            raise self.corrupt("bad SOF length")
        comp = np.zeros((4, _NF), dtype=np.int64)
        self.ids = []
        rgb = 0
        for i in range(c):
            cid = self.get8()
            self.ids.append(cid)
            if c == 3 and cid == b"RGB"[i]:
                rgb += 1
            q = self.get8()
            h, v = q >> 4, q & 15
            if not 1 <= h <= 4:
                raise self.corrupt("bad horizontal sampling factor")
            if not 1 <= v <= 4:
                raise self.corrupt("bad vertical sampling factor")
            tq = self.get8()
            if tq > 3:
                raise self.corrupt("bad quantisation table id")
            comp[i, _F_H] = h
            comp[i, _F_V] = v
            comp[i, _F_TQ] = tq
        self.rgb = rgb
        if self.img_x * self.img_y * c > 0x7FFFFFFF or self.img_x * self.img_y * 3 + 1 > 0x7FFFFFFF:
            raise self.corrupt("image too large")
        self.progressive = m == 0xC2
        hmax = int(comp[:c, _F_H].max())
        vmax = int(comp[:c, _F_V].max())
        self.hmax, self.vmax = hmax, vmax
        self.mcu_x = (self.img_x + hmax * 8 - 1) // (hmax * 8)
        self.mcu_y = (self.img_y + vmax * 8 - 1) // (vmax * 8)
        poff = 0
        coff = 0
        for i in range(c):
            h, v = int(comp[i, _F_H]), int(comp[i, _F_V])
            comp[i, _F_X] = (self.img_x * h + hmax - 1) // hmax
            comp[i, _F_Y] = (self.img_y * v + vmax - 1) // vmax
            w2 = self.mcu_x * h * 8
            h2 = self.mcu_y * v * 8
            comp[i, _F_W2] = w2
            comp[i, _F_H2] = h2
            comp[i, _F_POFF] = poff
            comp[i, _F_CW] = w2 // 8
            comp[i, _F_COFF] = coff
            poff += w2 * h2
            coff += w2 * h2
        self.comp = comp
        # stb only succeeds on reaching an EOI marker, which it can only see
        # as the bytes FF D9 somewhere after the frame header (reads past the
        # end of the file give zeros).  Without them the file is bound to
        # fail: say so now instead of decoding a truncated file first.
        if self.raw.find(b"\xff\xd9", self.pos) < 0:
            raise self.corrupt("truncated file (no EOI marker after the frame header)")
        try:
            # Samples of blocks no scan writes stay 0.  Slack at the end: with
            # non-integer sampling ratios stb reads rows longer than the
            # component's stride.
            self.planes = np.zeros(poff + 4 * self.img_x + 64, dtype=np.uint8)
            self.coeffs = np.zeros(coff, dtype=np.int16)
            self.done = np.zeros(coff // 64, dtype=np.uint8)
        except MemoryError:
            raise self.corrupt("image too large for memory") from None

    def read_scan_header(self) -> tuple:
        ls = self.get16()
        scan_n = self.get8()
        if scan_n < 1 or scan_n > 4 or scan_n > self.img_n:
            raise self.corrupt("bad SOS component count")
        if ls != 6 + 2 * scan_n:
            raise self.corrupt("bad SOS length")
        order = np.zeros(4, dtype=np.int64)
        for i in range(scan_n):
            cid = self.get8()
            q = self.get8()
            if cid not in self.ids:
                raise self.corrupt("SOS names an unknown component")
            which = self.ids.index(cid)
            if q >> 4 > 3:
                raise self.corrupt("bad DC Huffman table id")
            if q & 15 > 3:
                raise self.corrupt("bad AC Huffman table id")
            self.comp[which, _F_HD] = q >> 4
            self.comp[which, _F_HA] = q & 15
            order[i] = which
        ss = self.get8()
        se = self.get8()
        a = self.get8()
        ah, al = a >> 4, a & 15
        if self.progressive:
            if ss > 63 or se > 63 or ss > se or ah > 13 or al > 13:
                raise self.corrupt("bad progressive scan parameters")
        else:
            if ss != 0 or ah != 0 or al != 0:
                raise self.corrupt("bad sequential scan parameters")
            se = 63
        # tables this scan will use must exist (stb would read garbage)
        for i in range(scan_n):
            n = order[i]
            dc_used = (not self.progressive) or (ss == 0 and ah == 0)
            ac_used = (not self.progressive) or ss != 0
            if dc_used and not self.hdefined[self.comp[n, _F_HD]]:
                raise self.corrupt("scan uses an undefined DC Huffman table")
            if ac_used and not self.hdefined[4 + self.comp[n, _F_HA]]:
                raise self.corrupt("scan uses an undefined AC Huffman table")
            if not self.progressive and not self.qdefined[self.comp[n, _F_TQ]]:
                raise self.corrupt("scan uses an undefined quantisation table")
        # a progressive scan codes either DC coefficients or, for one component, a band of AC coefficients
        if self.progressive and (scan_n > 1 or ss == 0) and se != 0:
            raise self.corrupt("progressive scan mixes DC and AC coefficients")
        return order, scan_n, ss, se, ah, al

    def decode_scan(self, order, scan_n, ss, se, ah, al) -> tuple:
        """The scan at pos, decoded by the kernel of its kind: (status, pos, marker)."""
        walk = (self.arr, self.pos, order, scan_n, self.comp, self.mcu_x, self.mcu_y, self.restart_interval)
        if not self.progressive:
            return _decode_baseline_scan(*walk, self.htab, self.dequant, self.coeffs, self.done)
        if ss == 0:
            if ah == 0:
                return _decode_dc_first_scan(*walk, self.htab, self.coeffs, al)
            return _decode_dc_refine_scan(*walk, self.coeffs, al)
        if ah == 0:
            return _decode_ac_first_scan(*walk, self.htab, self.coeffs, ss, se, al)
        return _decode_ac_refine_scan(*walk, self.htab, self.coeffs, ss, se, al)

    # -- whole file ----------------------------------------------------------
    def decode(self) -> np.ndarray:
        if self.get_marker() != 0xD8:
            raise self.corrupt("no SOI marker")
        m = self.get_marker()
        while m not in (0xC0, 0xC1, 0xC2):
            self.process_marker(m)
            m = self.get_marker()
            while m == _NO_MARKER:
                # some files pad between segments: look for the next 0xFF
                self.skip_to_ff()
                if self.at_eof():
                    raise self.corrupt("no SOF marker")
                m = self.get_marker()
        self.read_frame_header(m)

        m = self.get_marker()
        while m != 0xD9:
            if m == 0xDA:
                status, pos, marker = self.decode_scan(*self.read_scan_header())
                self.pos = int(pos)
                self.marker = int(marker)
                if status != _OK:
                    raise self.corrupt(_KERNEL_ERRORS[status])
                if self.marker == _NO_MARKER:
                    # the scan ended before its data did: skip to the next 0xFF
                    # and take the byte after it as the marker
                    self.skip_to_ff()
                    if not self.at_eof():
                        self.pos += 1
                        self.marker = self.get8()
            elif m == 0xDC:  # DNL
                ld = self.get16()
                nl = self.get16()
                if ld != 4:
                    raise self.corrupt("bad DNL length")
                if nl != self.img_y:
                    raise self.corrupt("bad DNL height")
            else:
                self.process_marker(m)
            m = self.get_marker()

        if self.progressive:
            for i in range(self.img_n):
                if not self.qdefined[self.comp[i, _F_TQ]]:
                    raise self.corrupt("undefined quantisation table")
        _idct_all(self.comp, self.img_n, self.progressive, self.dequant, self.coeffs, self.done,
                  self.planes)
        return self.to_rgb()

    def to_rgb(self) -> np.ndarray:
        n = self.img_n
        is_rgb = n == 3 and (self.rgb == 3 or (self.app14 == 0 and not self.jfif))
        if n == 1:
            mode = _MODE_GREY
        elif n == 3:
            mode = _MODE_RGB if is_rgb else _MODE_YCC
        elif self.app14 == 0:
            mode = _MODE_CMYK
        elif self.app14 == 2:
            mode = _MODE_YCCK
        else:
            mode = _MODE_YCC  # YCbCr plus a fourth channel stb ignores
        try:
            out = np.empty((3, self.img_y, self.img_x), dtype=np.uint8)
        except MemoryError:
            raise self.corrupt("image too large for memory") from None
        _assemble(self.planes, self.comp, n, self.hmax, self.vmax, self.img_x, self.img_y,
                  mode, out)
        return out.transpose(1, 2, 0)


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------

def is_jpeg(data: bytes) -> bool:
    """True when data starts with a JPEG SOI marker (0xFF fill bytes allowed)."""
    i = 0
    n = len(data)
    if n < 2 or data[0] != 0xFF:
        return False
    while i < n and data[i] == 0xFF:
        i += 1
    return i < n and data[i] == 0xD8


def decode_jpeg(data: bytes, name: str = "<jpeg>") -> np.ndarray:
    """Decode a JPEG file's bytes to RGB uint8 of shape (h, w, 3), as stb_image does.

    The array is a view of (3, h, w) planes (`.transpose(2, 0, 1)` gives them back without a copy).
    Grey images are replicated to three channels (stbi_load with 3 channels).
    Raises JPEGError for files stb_image would reject (and for the few inputs
    on which stb_image's behaviour is undefined).
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"decode_jpeg wants bytes, not {type(data).__name__}")
    return _Decoder(data, name).decode()
