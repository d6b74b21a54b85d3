"""Model extraction: ART's CopycatCNN and KnockoffNets steal each victim at each query budget; the bridge measures
the thief's accuracy and its fidelity to the victim, against a thief trained on as many true labels."""
