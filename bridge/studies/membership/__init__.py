"""Membership inference as a study kind: ART's attacks and the bridge's LiRA on a target trained on known members."""
