"""Exit 1 with a message naming both versions unless the installed MindSpore is one cold_ms
supports (cold_ms.MINDSPORE_SUPPORTED): the last step of Dockerfile.ascend's build."""
import sys
from importlib import metadata


def main():
    from cold_ms import MINDSPORE_SUPPORTED
    try:
        found = metadata.version("mindspore")
    except metadata.PackageNotFoundError:
        found = None
    if found not in MINDSPORE_SUPPORTED:
        print(f"cold_ms supports MindSpore {', '.join(MINDSPORE_SUPPORTED)}; this image has "
              f"{found or 'no MindSpore'}: install a supported one (pip install mindspore=="
              f"{MINDSPORE_SUPPORTED[-1]}) or choose another base image", file=sys.stderr)
        return 1
    print(f"MindSpore {found}: supported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
