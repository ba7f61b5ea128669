"""Batch scoring for the `score` entry point: which rows can be scored and which cannot (checks),
where the scores go and how they are committed atomically (output), the local engine that
streams an input through the model in chunks (local), and the Spark engine that scores it with
`mlflow.pyfunc.spark_udf` (spark). The reviews themselves are read through the table of source
kinds in steps/data/sources/.
"""
