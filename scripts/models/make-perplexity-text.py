#!/usr/bin/env python3
"""Extracts the fixed perplexity text, test/fixtures/text/pride-and-prejudice-ch1-3.txt, from Debian's
package r-cran-janeaustenr (Jane Austen's novels as R data, from Project Gutenberg; package MIT,
texts public domain). Standard library only; the .deb is fetched with `apt-get download` unless a
path to it is given.

    python3 scripts/models/make-perplexity-text.py [path/to/r-cran-janeaustenr_1.0.0-1_all.deb]

The R lazy-load database (data/Rdata.rdx: a gzip'd serialized index; data/Rdata.rdb: per object a
4-byte big-endian length and a zlib stream) is read with the minimal R (XDR, format 2/3)
unserializer below, which handles what this package holds: character vectors, lists, pairlists
and attributes.
"""
import gzip
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib

PKG = "r-cran-janeaustenr"
VERSION = "1.0.0-1"
DEB_SHA256 = "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"
NOVEL = "prideprejudice"
FIRST_LINE = "Chapter 1"
END_BEFORE = "Chapter 4"  # chapters 1 to 3
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "fixtures", "text",
                   "pride-and-prejudice-ch1-3.txt")


class RReader:
    def __init__(self, data):
        self.b = io.BytesIO(data)
        self.refs = []
        assert self.b.read(2) == b"X\n", "only the XDR format is handled"
        version = self.int()
        self.int(), self.int()
        if version == 3:
            self.b.read(self.int())  # native encoding name

    def int(self):
        return struct.unpack(">i", self.b.read(4))[0]

    def length(self):
        n = self.int()
        if n == -1:
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def item(self):
        flags = self.int()
        t, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if t == 254:  # NILVALUE
            return None
        if t in (253, 242, 241, 247, 251, 252):  # special environments / markers
            return ("<special>", t)
        if t == 255:  # REFSXP
            idx = flags >> 8
            return self.refs[(idx if idx else self.int()) - 1]
        if t == 1:  # SYMSXP
            s = self.item()
            self.refs.append(s)
            return s
        if t in (2, 239):  # LISTSXP / ATTRLISTSXP: a pairlist, returned as [(tag, value)]
            out = []
            while True:
                if has_attr:
                    self.item()
                tag = self.item() if has_tag else None
                out.append((tag, self.item()))
                flags = self.int()
                t, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
                if t == 254:
                    return out
                if t not in (2, 239):
                    raise ValueError(f"pairlist tail of type {t}")
        if t == 9:  # CHARSXP
            n = self.int()
            return None if n == -1 else self.b.read(n).decode("utf-8")
        if t in (10, 13):  # LGLSXP / INTSXP
            n = self.length()
            v = list(struct.unpack(f">{n}i", self.b.read(4 * n)))
        elif t == 14:  # REALSXP
            n = self.length()
            v = list(struct.unpack(f">{n}d", self.b.read(8 * n)))
        elif t in (16, 19, 20):  # STRSXP / VECSXP / EXPRSXP
            v = [self.item() for _ in range(self.length())]
        else:
            raise ValueError(f"unhandled SEXP type {t}")
        if has_attr:
            attrs = dict(self.item())
            names = attrs.get("names")
            if names is not None and t == 19:
                return dict(zip(names, v))
        return v


def load_lazy_db(rdx_bytes, rdb_bytes):
    index = RReader(gzip.decompress(rdx_bytes)).item()
    out = {}
    for name, (off, n) in index["variables"].items():
        blob = rdb_bytes[off:off + n]
        if index["compressed"] in (True, [True], 1, [1]):
            raw = zlib.decompress(blob[4:])
        else:
            raise ValueError(f"compression {index['compressed']} not handled")
        out[name] = RReader(raw).item()
    return out


def deb_members(deb):
    """The data.tar.* members of a .deb (an ar archive)."""
    data = open(deb, "rb").read()
    assert data[:8] == b"!<arch>\n"
    pos = 8
    while pos < len(data):
        name = data[pos:pos + 16].decode().strip().rstrip("/")
        size = int(data[pos + 48:pos + 58].decode().strip())
        body = data[pos + 60:pos + 60 + size]
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(body))
        pos += 60 + size + (size & 1)
    raise ValueError("no data.tar in the .deb")


def main():
    tmp = None
    if len(sys.argv) > 1:
        deb = sys.argv[1]
    else:
        tmp = tempfile.mkdtemp()
        os.chmod(tmp, 0o755)  # apt's _apt user writes there
        subprocess.run(["apt-get", "download", f"{PKG}={VERSION}"], cwd=tmp, check=True)
        deb = os.path.join(tmp, os.listdir(tmp)[0])
    got = hashlib.sha256(open(deb, "rb").read()).hexdigest()
    if got != DEB_SHA256:
        sys.exit(f"{deb}: sha256 {got}, want {DEB_SHA256}")
    tar = deb_members(deb)
    if tmp:
        shutil.rmtree(tmp)
    base = "./usr/lib/R/site-library/janeaustenr/data/Rdata"
    objs = load_lazy_db(tar.extractfile(base + ".rdx").read(), tar.extractfile(base + ".rdb").read())
    lines = objs[NOVEL]
    start = lines.index(FIRST_LINE)
    end = lines.index(END_BEFORE)
    text = "\n".join(lines[start:end]).rstrip() + "\n"
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"{os.path.normpath(OUT)}: {len(text.encode())} bytes, {len(text.split())} words, "
          f"lines {start + 1}-{end} of {NOVEL} ({len(lines)} lines), sha256 {hashlib.sha256(text.encode()).hexdigest()}")


if __name__ == "__main__":
    main()
