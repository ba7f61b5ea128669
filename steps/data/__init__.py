"""The reviews: where they come from (sources/: folder, file, https, S3, ODBC) and how the
ingested dataset sits on disk, with its manifest and validation marker (dataset)."""
