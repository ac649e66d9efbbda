"""Weights read as views of a file's memory map, and giving their pages back."""
import mmap

import numpy as np


def release_mapped(arrays):
    """madvise(DONTNEED) the memory maps (of files opened read-only) any of `arrays` views."""
    maps = {}
    for base in arrays:
        while isinstance(base, np.ndarray) and not isinstance(base, np.memmap):
            base = base.base  # views of views; a MindSpore checkpoint's arrays end in other objects
        if isinstance(base, np.memmap) and getattr(base, "_mmap", None) is not None:
            maps[id(base._mmap)] = base._mmap
    for m in maps.values():
        m.madvise(mmap.MADV_DONTNEED)
