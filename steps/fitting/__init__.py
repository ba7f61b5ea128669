"""Fitting the model's recipe: the pipeline a train config describes, fitted on labelled reviews
(self-trained on unlabeled ones when given), in this process or in a worker process. train ships
what it fits; tune cross-validates the same fit, so a fit there is a fit here."""
