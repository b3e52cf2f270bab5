"""The explain stage: what the shipped model looked at, and whether those maps mean anything."""
