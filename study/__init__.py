"""softmax-study: a hyperparameter-fair comparison of classifier heads on CIFAR-100."""
