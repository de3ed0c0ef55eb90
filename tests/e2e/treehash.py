#!/usr/bin/env python3
"""Print one sha256 over a directory tree: names, types, modes, owners, file
sizes, contents and mtimes, symlink targets (directory mtimes are left out: a
restore may touch them). With --list, print the per-entry lines instead, to diff
two states.

Usage: treehash.py DIR [--list]
"""

import hashlib
import os
import stat
import sys


def entries(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            owner = f"{st.st_uid}:{st.st_gid}"
            if stat.S_ISLNK(st.st_mode):
                yield f"l {rel} -> {os.readlink(path)} {owner}"
            elif stat.S_ISDIR(st.st_mode):
                yield f"d {rel} {mode:o} {owner}"
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                yield f"f {rel} {mode:o} {owner} {st.st_size} {int(st.st_mtime)} {h.hexdigest()}"
            else:
                yield f"? {rel} {stat.S_IFMT(st.st_mode):o}"


def main(argv):
    if len(argv) < 2 or not os.path.isdir(argv[1]):
        sys.exit("usage: treehash.py DIR [--list]")
    if "--list" in argv[2:]:
        for line in entries(argv[1]):
            print(line)
        return 0
    h = hashlib.sha256()
    for line in entries(argv[1]):
        h.update(line.encode("utf-8", "surrogateescape") + b"\n")
    print(h.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
