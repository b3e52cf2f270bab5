"""The quality stage: pure functions per modality (images.py, eeg.py) and thin Prefect tasks."""
