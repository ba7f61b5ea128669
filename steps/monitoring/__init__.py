"""Drift monitoring of the served model's inputs and outputs: the text figures of a batch of reviews
(`text`), the training profile shipped with every model (`profile`), the comparison of a batch with
that profile against params.yaml `monitor.*` bounds (`drift`), and its HTML + JSON report
(`report`). The served model's live metrics are pyfunc/telemetry.py; the PromQL over them, from
which the alert rules, the dashboard and the post-promotion analysis are built, is `promql`."""
