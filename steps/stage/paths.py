"""Every file and folder a stage reads or writes, declared once.

Paths are relative to the working directory, which is the project root both under `mlflow run`
and `dvc repro`. Stage functions take them as arguments with these defaults, so tests point them
at tmp_path instead.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where MLproject lives (for mlflow.run)

PARAMS_FILE = Path("params.yaml")
PIPELINE_LOCK = Path(".pipeline.lock")  # held by the stage (or main) at work (steps/stage/lock.py)

DATA_DIR = Path("data")
DOWNLOAD_DIR = DATA_DIR / "downloads"  # verified https downloads, reused by later runs
INGESTED_DIR = DATA_DIR / "ingested"
TRAIN_FILE_NAME = "train.parquet"
TEST_FILE_NAME = "test.parquet"
UNLABELED_FILE_NAME = "unlabeled.parquet"  # only when the source has unlabeled reviews (aclImdb)
MANIFEST_FILE_NAME = "manifest.json"
VALIDATED_MARKER = DATA_DIR / "validated.json"  # written only when validation passes


REPORTS_DIR = Path("reports")
VALIDATION_REPORT_DIR = REPORTS_DIR / "validation"  # GX Data Docs site (index.html) + result
VALIDATION_RESULT_FILE_NAME = "validation_result.json"
COMPARE_TABLE = REPORTS_DIR / "compare.md"
COMPARE_PLOT = REPORTS_DIR / "compare.png"
TUNE_REPORT = REPORTS_DIR / "tune.md"  # tune's ranking of the candidates (steps/tune.py)
TRAIN_METRICS_FILE = REPORTS_DIR / "train_metrics.json"  # validation metrics of the train stage
# Beside it: train's timings, sizes and counts (listed after the headline in `dvc exp show`).
TRAIN_STATS_FILE = REPORTS_DIR / "train_stats.json"
METRICS_FILE = REPORTS_DIR / "metrics.json"  # evaluate's test metrics and pass rates: numbers only
EVALUATION_FILE = REPORTS_DIR / "evaluation.json"  # what evaluate scored, and the checks' verdict
PLOTS_DIR = REPORTS_DIR / "plots"  # evaluate's PNGs and the CSV/JSON data behind them
MISCLASSIFIED_FILE = REPORTS_DIR / "misclassified.csv"
BEHAVIOURAL_FILE = REPORTS_DIR / "behavioural.json"  # every behavioural case and its outcome
ANALYSIS_SAMPLE_FILE = REPORTS_DIR / "analysis_sample.json"  # deploy replays it (measure/sample.py)
MONITOR_REPORT_DIR = REPORTS_DIR / "monitor"  # monitor's drift report, replaced as a whole
MONITOR_JSON_NAME = "report.json"
MONITOR_HTML_NAME = "report.html"

MODELS_DIR = Path("models")
MODEL_DIR = MODELS_DIR / "model"  # the trained pyfunc model (mlflow.pyfunc.save_model)
TRAINED_MODEL_INFO_FILE = MODELS_DIR / "model.json"  # train's run id and logged model URI

K8S_DIR = Path("k8s")  # the manifests `make deploy-plan` plans against without a cluster
MONITORING_DIR = K8S_DIR / "monitoring"  # alert rules and dashboard (steps/monitoring/promql.py)

TRACKING_DB = Path("mlflow.db")
ARTIFACTS_DIR = Path("mlartifacts")
