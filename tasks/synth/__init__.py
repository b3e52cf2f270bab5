"""The synth stage: GAN-made training samples and the measurements of whether they help."""
