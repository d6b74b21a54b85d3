"""Backdoor poisoning: BadNets-style triggers, ART's clean-label backdoor and gradient matching retrain each victim on
a poisoned training set; the bridge measures clean accuracy and the attack success rate, and ART's poisoning
defences are judged against the known poison indices."""
