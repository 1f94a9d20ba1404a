"""scikit-learn estimators of gpumlp networks: :class:`MLPClassifier` and :class:`MLPRegressor`.

They take the network's and the training's settings as constructor parameters (``hidden``,
``lr``, ``epochs``, ... named as in :class:`gpumlp.Network` and ``gpumlp train``;
``random_state`` for the seed), each defaulting to gpumlp's default for a table (those of
``gpumlp train --data FILE``, :mod:`gpumlp.tabledefaults`), and work wherever a scikit-learn
estimator does (``Pipeline``, ``GridSearchCV``, ``cross_val_score``, pickling). This is the only
place gpumlp imports scikit-learn (``pip install "gpumlp[sklearn]"``); ``import gpumlp`` does
not.

>>> from gpumlp.sklearn import MLPClassifier
>>> clf = MLPClassifier(random_state=0).fit(X_train, y_train)  # doctest: +SKIP
>>> clf.predict(X_test)  # labels, as y_train holds them  # doctest: +SKIP
"""

from .classifier import MLPClassifier
from .regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
