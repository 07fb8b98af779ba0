"""Stage 6, output: sharded Parquet and TFRecord writers and the run manifest.

``writers`` writes batch files and split shards atomically and reads them back;
``manifest`` records the configuration, versions, counts and label statistics.

Imports: ``pipeline.index`` (the error table) and ``schemas``.
"""
