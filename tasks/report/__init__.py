"""The report stage: run directory files, report.html and Prefect artifacts (common.py, images.py, eeg.py)."""
