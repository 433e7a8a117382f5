"""The contract between stages: the manifests a checkpoint and an export directory carry, and their files.

* :mod:`.checkpoint`: the checkpoint manifest (``checkpoint.json``, no torch);
* :mod:`.export_manifest`: the export manifest (``export.json``) and its model entries;
* :mod:`.schema`: the declarative schema both manifests are validated against on load;
* :mod:`.manifest_io`: reading a manifest (kind, schema version) and its file entries with their sha256;
* :mod:`.integrity`: file hashes (cached by size and mtime), an ONNX file's own digest and metadata;
* :mod:`.fileio`: atomic writes and sha256, the leaf every other module may import;
* :mod:`.temperatures`: the softmax temperature per task a manifest may carry.

Training, export and calibration write these files and the runtime reads them: one definition each.
"""
