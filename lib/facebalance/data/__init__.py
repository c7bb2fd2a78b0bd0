"""Data: the synthfaces renderer, real-dataset loaders and conversion, Parquet shards."""
