"""Data-parallel (DDP) training, parked: reached by no flow and no config key yet; see README.md here."""
