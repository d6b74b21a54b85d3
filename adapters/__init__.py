"""One module per toolkit; the only place in advbridge that imports ART, Foolbox or torchattacks."""
