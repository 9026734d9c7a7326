"""An image's size as its header declares it, read from the first bytes without decoding: what a server checks
before it lets a decoder allocate (a 60-byte PNG can declare 65535 x 65535 pixels, 50 GB as darknet's floats).

The formats are those whose header gives the size in fixed places: JPEG (its frame header), PNG, GIF, BMP, WebP
and the PNM family. `declared_size` names the problem in an ImageError: not one of them, a header cut short, a
JPEG without its end marker (a truncated upload, which a JPEG decoder would fill with grey rather than refuse).
"""
import struct

from .image import ImageError

FORMATS = "JPEG, PNG, GIF, BMP, WebP or PNM"
# JPEG's frame headers (SOF0-SOF15 but DHT C4, JPG C8 and DAC CC), which hold the height and width.
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length: TEM, RST0-7, SOI, EOI.
_STANDALONE = {0x01, *range(0xD0, 0xDA)}


def declared_size(data, name):
    """(width, height) that image bytes `data` declare; an ImageError naming `name` and the problem otherwise."""
    for signature, reader in _READERS:
        if data.startswith(signature):
            try:
                return reader(data, name)
            except ImageError:
                raise
            except (struct.error, IndexError, ValueError):
                raise ImageError(f"{name}: a truncated or malformed {reader.__name__[1:].upper()} header") from None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        try:
            return _webp(data, name)
        except (struct.error, IndexError, ValueError):
            raise ImageError(f"{name}: a truncated or malformed WebP header") from None
    raise ImageError(f"{name}: not an image ({FORMATS} expected, the body starts {data[:8]!r})")


def _jpeg(data, name):
    pos, size = 2, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("not a marker")
        marker = data[pos + 1]
        if marker == 0xFF:        # fill bytes before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = struct.unpack_from(">H", data, pos + 2)[0]
        if marker in _SOF:
            height, width = struct.unpack_from(">HH", data, pos + 5)
            size = (width, height)
            break
        pos += 2 + length
    if size is None:
        raise ValueError("no frame header")
    if data.rfind(b"\xff\xd9") < pos:
        raise ImageError(f"{name}: a truncated JPEG (no end-of-image marker after its frame header)")
    return size


def _png(data, name):
    if data[12:16] != b"IHDR":
        raise ValueError("no IHDR")
    return struct.unpack_from(">II", data, 16)


def _gif(data, name):
    return struct.unpack_from("<HH", data, 6)


def _bmp(data, name):
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height)


def _pnm(data, name):
    tokens, pos = [], 2
    while len(tokens) < 2:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while end < len(data) and data[end:end + 1].isdigit():
            end += 1
        tokens.append(int(data[pos:end]))   # ValueError when no digits
        pos = end
    return tuple(tokens)


def _webp(data, name):
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = struct.unpack_from("<I", data, 21)[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    raise ValueError("unknown WebP chunk")


_READERS = [(b"\xff\xd8\xff", _jpeg), (b"\x89PNG\r\n\x1a\n", _png), (b"GIF87a", _gif), (b"GIF89a", _gif),
            (b"BM", _bmp)] + [(b"P" + bytes([kind]), _pnm) for kind in b"123456"]
