"""The evaluate stage: the image classifier against the classical baseline (:mod:`.baseline`), and EEG detection
and prediction scoring (:mod:`.eeg`, :mod:`.prediction_scoring`)."""
