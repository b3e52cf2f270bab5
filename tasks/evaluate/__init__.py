"""The evaluate stage: metrics (:mod:`.metrics`), the classical baseline (:mod:`.baseline`) and the image task."""
