"""The learned routing decision: embedder, route classifier, policy, training, evaluation, bundles.

Pure Python, numpy and scikit-learn; nothing here knows about HTTP or the service.
"""
