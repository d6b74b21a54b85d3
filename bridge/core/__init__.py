"""What every part of the bridge shares: the strict schema base, one-line errors, identities, the progress bar."""
