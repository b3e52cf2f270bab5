"""Score new images or EEG recordings with a run's model (model.onnx, model.int8.onnx or model.pt), and write the
review files of the auto-labelling loop; the ``batch-inference`` flow and ``vigil predict`` share it."""
