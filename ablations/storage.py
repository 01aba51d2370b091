"""Where a grid keeps Ray Tune's trial folders and checkpoints: a local folder (the default) or shared
storage given as a path or a URI that pyarrow reaches (``s3://``, ``gs://``, ``hdfs://``, ``file://``).

On a cluster every node writes its trials' checkpoints there, so it must be storage all nodes reach
(Ray documents a driver's local disk as unsupported for checkpoints on multi-node clusters). The grid
checks it before Ray starts: it must be creatable and writable from here.
"""

from __future__ import annotations

import uuid


class StorageError(ValueError):
    """The storage cannot be reached or written; the message says which and why, in one line."""


def check_storage(where: str) -> str:
    """``where`` made absolute when local; raises StorageError when it cannot be written from here."""
    import pyarrow.fs as pafs

    try:
        filesystem, path = pafs.FileSystem.from_uri(where)
    except Exception as e:  # noqa: BLE001  (pyarrow raises ArrowInvalid, OSError, ... per scheme)
        if "://" in where:
            raise StorageError(f"--storage {where!r}: not reachable ({str(e).splitlines()[0]})") from None
        from pathlib import Path

        where = str(Path(where).expanduser().resolve())
        filesystem, path = pafs.LocalFileSystem(), where
    probe = f"{path.rstrip('/')}/.memkit-probe-{uuid.uuid4().hex[:8]}"
    try:
        filesystem.create_dir(path, recursive=True)
        with filesystem.open_output_stream(probe) as f:
            f.write(b"ok")
        filesystem.delete_file(probe)
    except Exception as e:  # noqa: BLE001
        raise StorageError(f"--storage {where!r}: cannot write there ({str(e).splitlines()[0]})") from None
    return where if "://" in where else path
