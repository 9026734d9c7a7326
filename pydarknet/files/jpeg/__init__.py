"""stb_image's JPEG decoder: markers, Huffman tables, baseline, progressive, restarts, IDCT, colour.
May import: nothing else of pydarknet's.

A JPEG decoder that reproduces stb_image's pixels bit for bit.

Darknet reads images with stb_image (``stbi_load(path, &w, &h, &c, 3)``).  Other
decoders (libjpeg-turbo inside OpenCV, PIL) use different IDCT rounding,
different chroma upsampling and a different YCbCr->RGB approximation, so their
pixels differ from stb's by a few grey levels here and there -- enough to move
darknet's detections.  This package decodes the way stb_image v2.19 (the copy in
pjreddie's darknet) does -- its plain C kernels, which its SSE2 kernels match
bit for bit:

* Huffman decoding with a 32-bit left-aligned bit buffer that is refilled a byte
  at a time; once a marker has been met the buffer is filled with zero bits, so
  an entropy segment that ends early decodes as if padded with zeros.
* The jpeg-6b style "islow" integer IDCT with 12-bit constants.  stb forms its
  constants as ``(int)(c * 4096 + 0.5)``, which truncates towards zero, so the
  negative constants are one smaller in magnitude than libjpeg's.  The column
  pass keeps two extra bits (``>> 10``), the row pass removes the rest
  (``>> 17``) with +128 level shift folded into the rounding term.
* Chroma upsampling: 2x vertical, 2x horizontal and 2x2 "triangle" filters
  (3/4 near + 1/4 far), nearest neighbour for every other factor.
* YCbCr->RGB in fixed point with 20 fractional bits where the Cb contribution
  to green has its low 16 bits cleared.
* Adobe APP14 transform flag / component ids 'R','G','B' select plain RGB;
  4-component files are CMYK (transform 0), YCCK (transform 2) or YCbCr with the
  fourth channel ignored.  EXIF orientation is ignored, like stb.

Where stb's behaviour on a corrupt file is well defined we do the same (zero
padding after an entropy segment cut short by a marker, a scan that stops at a
non-restart marker, failure whenever no EOI marker is reached -- so every
truncated file fails).  Where stb would read uninitialised memory (samples of
blocks no scan wrote) we use zeros; where stb's behaviour is undefined
(undefined tables, out-of-range Huffman symbols, an invalid code in a
progressive DC scan, which stb does not check) or where it would hang (see
``_Decoder.at_eof``) we raise :class:`JPEGError`.

Sequential scans keep their dequantised coefficients and every block is
transformed once after the last scan; that gives the same pixels as stb's
transform-while-decoding, also when scans overlap or stop early.

Files stb cannot decode (arithmetic coding, 12-bit samples, lossless,
hierarchical) raise :class:`JPEGError` with a message starting with
``"unsupported JPEG feature:"`` and ``unsupported=True`` so callers can fall
back to another decoder.

The modules, in the order a file is decoded: decoder.py (markers and segments, the public functions), huffman.py
(the tables and the bit reader), scan.py (the blocks a scan codes, in its order, and its restart intervals), one
kernel per kind of scan: baseline.py (sequential) and progressive.py (DC first and refinement scans, AC band first
and refinement scans); then idct.py and color.py (upsampling and YCbCr -> RGB); tables.py holds what they share.
"""
from .decoder import JPEGError, decode_jpeg, is_jpeg

__all__ = ["JPEGError", "decode_jpeg", "is_jpeg"]
