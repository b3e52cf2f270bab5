"""The train stage: image classifiers (images.py) and EEG window classifiers (eeg.py) through models.training.fit."""
