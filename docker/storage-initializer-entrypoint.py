"""Storage initializer entry point: download each `<uri> <dest>` pair with kserve-storage.

KServe's webhook passes the arguments in pairs (pkg/webhook/admission/pod/storage_initializer_injector.go).
"""

import sys

from kserve_storage import Storage, configure_logging, logger


def main(argv: list[str]) -> int:
    if not argv or len(argv) % 2:
        print(
            "usage: initializer-entrypoint <src_uri> <dest_path> [<src_uri> <dest_path> ...]",
            file=sys.stderr,
        )
        return 2
    configure_logging()
    for uri, dest in zip(argv[::2], argv[1::2], strict=True):
        logger.info("Initializing, args: src_uri [%s] dest_path [%s]", uri, dest)
        Storage.download(uri, dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
