"""The ``vigil`` sub-commands that are not flows: the local server, scheduled deployments, the runs index and gc.

They manage runs rather than produce them, so they live beside the flows, not inside them.
"""
