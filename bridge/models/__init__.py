"""Models: the shared model toolkits receive, the zoo (PyTorch and Keras), outside networks, training, the cache."""
