"""What a run leaves behind and how it is read back: the Parquet tables and run manifests
(:mod:`~pipeline.output.parquet`), and reading them (:mod:`~pipeline.output.catalog`)."""
