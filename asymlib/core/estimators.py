"""scikit-learn estimators: a deep ensemble of MLPs, W-Asymmetric or sigma-Asymmetric MLPs
behind ``fit`` / ``predict``, for your own data.

``DeepEnsembleClassifier`` and ``DeepEnsembleRegressor`` are the convenient front door to
the batched model (``models.MLPEnsemble``) and its trainer (``trainer.fit``): they take
numpy arrays or pandas DataFrames of numeric features (float64 welcome), labels of any type
for the classifier, and do what ``load_dataset`` does for the paper's datasets:

- hold out ``val_fraction`` of the rows for early stopping (stratified by class for the
  classifier) unless ``X_val, y_val`` are given;
- standardise the features with a ``StandardScaler`` fitted on the training part only;
  regression targets are left as they are, as in the paper's protocol (docs/protocol.md);
  wrap the regressor in ``sklearn.compose.TransformedTargetRegressor`` to scale them;
- train all ``members`` networks at once, each with its own initialisation seed, data order
  and early stopping, with the paper's settings (``trainer.TrainConfig``).

The ensemble averages as the paper does: the regressor's prediction is the mean of the
members' outputs; the classifier's is the argmax of the mean of the members' logits, and
its ``predict_proba`` is the softmax of that mean, so that ``predict`` is always the argmax
of ``predict_proba``. ``predict_members`` gives each member's own predictions.

Both pass scikit-learn's ``check_estimator`` except the checks in
``EXPECTED_FAILED_CHECKS`` (each with its reason); ``tests/test_estimators.py`` runs them.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from .checks import check_choice, check_int, check_number
from .models import MODEL_TYPES, MLPEnsemble, default_n_fix
from .trainer import TrainConfig, TrainResult, fit, predict

__all__ = ["DeepEnsembleClassifier", "DeepEnsembleRegressor", "EXPECTED_FAILED_CHECKS"]

#: The paper's training settings, the estimators' defaults.
_PAPER = TrainConfig()

#: scikit-learn checks (``check_estimator``) that the estimators do not pass, and why; pass
#: it as ``expected_failed_checks`` to ``check_estimator`` or ``parametrize_with_checks``.
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_methods_subset_invariance": (
        "the networks compute in float32, and a float32 matrix multiply may round a row's result "
        "differently with the number of rows it is computed with (relative differences of about "
        "1e-7, the check's tolerance)"
    ),
}


class _DeepEnsemble(BaseEstimator):
    """What the classifier and the regressor share: parameters, their checks, the split,
    the scaling, the seeds and the training. Subclasses set ``_regression`` and turn
    targets into training labels (``_encode_targets``)."""

    _regression: bool

    def __init__(
        self,
        *,
        kind: str = "wmlp",
        members: int = 16,
        hidden: int = 64,
        lr: float = _PAPER.lr,
        weight_decay: float = _PAPER.weight_decay,
        batch_size: int = _PAPER.batch_size,
        max_epochs: int = _PAPER.max_epochs,
        patience: int = _PAPER.patience,
        val_fraction: float = 0.2,
        random_state=None,
        device="cpu",
        verbose: bool = False,
    ) -> None:
        self.kind = kind
        self.members = members
        self.hidden = hidden
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ checks

    def _check_params(self) -> tuple[TrainConfig, torch.device]:
        """The parameters, checked (scikit-learn checks them in ``fit``, not in ``__init__``):
        the training settings as a TrainConfig and the device."""
        where = type(self).__name__
        check_choice(self.kind, MODEL_TYPES, name=f"{where}: kind")
        for name in ("members", "hidden", "batch_size", "max_epochs", "patience"):
            check_int(getattr(self, name), name=f"{where}: {name}")
        check_number(self.lr, name=f"{where}: lr", minimum=0.0, strict=True)
        check_number(self.weight_decay, name=f"{where}: weight_decay", minimum=0.0)
        check_number(self.val_fraction, name=f"{where}: val_fraction", minimum=0.0, strict=True)
        if self.val_fraction >= 1:
            raise ValueError(f"{where}: val_fraction: expected a number in (0, 1), got {self.val_fraction!r}")
        if not isinstance(self.verbose, (bool, np.bool_, numbers.Integral)):
            raise TypeError(f"{where}: verbose: expected True or False, got {type(self.verbose).__name__}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"{where}: device: expected 'cpu', 'cuda' or 'cuda:N', got {self.device!r}") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{where}: device: {self.device!r} asked for, but this torch sees no CUDA device")
        config = TrainConfig(
            lr=float(self.lr),
            weight_decay=float(self.weight_decay),
            batch_size=int(self.batch_size),
            max_epochs=int(self.max_epochs),
            patience=int(self.patience),
        )
        return config, device

    def _encode_targets(self, y: np.ndarray, *, first: bool) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ fit

    def fit(self, X, y, *, X_val=None, y_val=None):
        """Train the ensemble on (X, y); returns self.

        X: (n, d) numeric features, array-like or DataFrame. y: (n,) targets (any labels
        for the classifier). X_val, y_val: the rows early stopping watches; if not given,
        ``val_fraction`` of (X, y) is held out (stratified by class for the classifier when
        every class has enough rows, a plain random split otherwise).
        """
        config, device = self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=self._regression)
        y = self._encode_targets(y, first=True)
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val: give both (the early-stopping rows) or neither")
        rng = check_random_state(self.random_state)
        split_seed, mask_seed = (int(s) for s in rng.randint(0, 2**31 - 1, size=2))
        init_seeds = [int(s) for s in rng.randint(0, 2**31 - 1, size=self.members)]
        order_seeds = [int(s) for s in rng.randint(0, 2**31 - 1, size=self.members)]
        if X_val is None:
            X_train, X_val, y_train, y_val = self._split(X, y, split_seed)
        else:
            X_train, y_train = X, y
            X_val = validate_data(self, X_val, reset=False, dtype=np.float64)
            y_val = self._encode_targets(column_or_1d(check_array(y_val, ensure_2d=False, dtype=None)), first=False)
            if len(y_val) != len(X_val):
                raise ValueError(f"y_val: expected {len(X_val)} rows (as many as X_val), got {len(y_val)}")

        self.scaler_ = StandardScaler().fit(X_train)
        d = X.shape[1]
        out = 1 if self._regression else len(self.classes_)
        fan_ins = (d, self.hidden, self.hidden, self.hidden)
        self.ensemble_ = MLPEnsemble(
            d,
            self.hidden,
            out,
            members=self.members,
            kind=self.kind,
            init_seeds=init_seeds,
            mask_seed=mask_seed,
            # The paper's frozen entries per unit, at most a layer's inputs (one feature: 1).
            n_fix=[min(n, fan_in) for n, fan_in in zip(default_n_fix(self.hidden), fan_ins)],
        ).to(device)
        task = "regression" if self._regression else ("binary" if out == 2 else "multiclass")
        self.train_result_: TrainResult = fit(
            self.ensemble_,
            self._features(X_train, scaled=False),
            self._targets(y_train),
            self._features(X_val, scaled=False),
            self._targets(y_val),
            task=task,
            order_seeds=order_seeds,
            config=config,
            progress=bool(self.verbose),
            description=type(self).__name__,
        )
        self.n_epochs_ = self.train_result_.epochs.copy()
        diverged = int(self.train_result_.diverged.sum())
        if diverged:
            warnings.warn(
                f"{diverged} of {self.members} members diverged (non-finite loss); their predictions are "
                "not finite. Try a smaller lr or scale the targets (TransformedTargetRegressor).",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _split(self, X: np.ndarray, y: np.ndarray, seed: int):
        """(X_train, X_val, y_train, y_val): ``val_fraction`` of the rows held out."""
        if len(X) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 samples (training and early-stopping rows), "
                f"got n_samples = {len(X)}"
            )
        if not self._regression:
            try:
                return train_test_split(X, y, test_size=self.val_fraction, random_state=seed, stratify=y)
            except ValueError:  # a class with 1 row, or fewer held-out rows than classes
                pass
        return train_test_split(X, y, test_size=self.val_fraction, random_state=seed)

    def _features(self, X: np.ndarray, *, scaled: bool = True) -> torch.Tensor:
        """Checked, standardised float32 features on the ensemble's device. ``scaled=False``:
        X is already a checked float64 array (fit's own parts)."""
        if scaled:
            check_is_fitted(self)
            X = validate_data(self, X, reset=False, dtype=np.float64)
        X = self.scaler_.transform(X).astype(np.float32)
        return torch.from_numpy(X).to(self.ensemble_.layers[0].weight.device)

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        y = np.ascontiguousarray(y, dtype=np.float32 if self._regression else np.int64)
        return torch.from_numpy(y).to(self.ensemble_.layers[0].weight.device)

    def _outputs(self, X) -> torch.Tensor:
        """(members, n, out) float64 outputs of every member on X (logits for the classifier)."""
        X = self._features(X)  # checks that the estimator is fitted before ensemble_ is read
        return predict(self.ensemble_, X).double().cpu()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        # On a GPU some kernels may round differently from run to run.
        tags.non_deterministic = str(self.device) != "cpu"
        return tags


_PARAMETERS = """
    Parameters
    ----------
    kind : {"mlp", "wmlp", "smlp", "syre"}, default="wmlp"
        The members: plain MLPs, W-Asymmetric MLPs (some weights of every unit frozen at
        random values), sigma-Asymmetric MLPs (a frozen random gate in every activation) or
        MLPs trained with syre (weight decay towards a fixed random anchor).
        Each member: Linear(d, hidden) and two Linear(hidden, hidden), each followed by GELU
        (the gate for "smlp"), then Linear(hidden, out).
    members : int, default=16
        Networks in the ensemble, trained at once as one batched model.
    hidden : int, default=64
        Width of the three hidden layers.
    lr, weight_decay, batch_size, max_epochs, patience : the paper's AdamW training
        (defaults 1e-3, 3e-2, 256, 1000, 16): each member stops when its validation loss has
        not improved for ``patience`` epochs; the parameters kept are those of its last epoch.
    val_fraction : float, default=0.2
        Share of the rows held out for early stopping when ``fit`` gets no ``X_val, y_val``.
    random_state : int, RandomState instance or None, default=None
        Draws the split, the W-Asymmetric mask and every member's initialisation and data
        order; an int gives identical predictions on every fit (on the CPU).
    device : str or torch.device, default="cpu"
        Where the ensemble trains and predicts ("cuda" for a GPU).
    verbose : bool, default=False
        Show a progress bar of the epochs.
"""

_ATTRIBUTES = """
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names, when X was a DataFrame with string column names.
    scaler_ : StandardScaler
        The standardisation, fitted on the training part (validation rows excluded).
    ensemble_ : MLPEnsemble
        The trained batched model (stacked weights ``(members, in, out)``).
    n_epochs_ : ndarray of shape (members,)
        Epochs each member trained before early stopping.
    train_result_ : TrainResult
        The trainer's per-member records (validation losses, times, divergence).
"""


_NOTES = """
    Notes
    -----
    scikit-learn's ``check_estimator`` passes but for the checks in ``EXPECTED_FAILED_CHECKS``:
""" + "".join(f"\n    - ``{name}``: {reason}.\n" for name, reason in EXPECTED_FAILED_CHECKS.items())


class DeepEnsembleClassifier(ClassifierMixin, _DeepEnsemble):
    __doc__ = (
        """A deep ensemble classifier: ``members`` MLPs, WMLPs or SMLPs trained as one batched model.

    Features are standardised on the training part; labels may be of any type
    (``classes_`` holds them sorted). ``predict`` is the class of the largest mean logit
    over members (the paper's rule); ``predict_proba`` is the softmax of the mean logits,
    so ``predict`` is its argmax. The mean of the members' own probabilities (the
    predictive distribution the library's NLL and calibration scores use) is
    ``predict_members(X).mean(axis=0)``.
"""
        + _PARAMETERS
        + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels."""
        + _ATTRIBUTES
        + _NOTES
        + """
    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> model = DeepEnsembleClassifier(members=4, random_state=0).fit(X, y)
    >>> model.predict_proba(X[:2]).shape
    (2, 2)
"""
    )

    _regression = False

    def _encode_targets(self, y: np.ndarray, *, first: bool) -> np.ndarray:
        if first:
            check_classification_targets(y)
            self._encoder = LabelEncoder().fit(y)
            self.classes_ = self._encoder.classes_
            if len(self.classes_) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs at least 2 classes in y, got 1 class ({self.classes_[0]!r})"
                )
            return self._encoder.transform(y)
        unknown = np.setdiff1d(y, self.classes_)
        if len(unknown):
            raise ValueError(
                f"y_val: labels {unknown[:5].tolist()} are not among the classes of y {self.classes_[:10].tolist()}"
            )
        return self._encoder.transform(y)

    def predict(self, X) -> np.ndarray:
        """(n,) predicted labels: the argmax of the members' mean logits."""
        proba = self.predict_proba(X)  # checks that the estimator is fitted before classes_ is read
        return self.classes_[proba.argmax(axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        """(n, n_classes) probabilities: the softmax of the members' mean logits."""
        return torch.softmax(self._outputs(X).mean(dim=0), dim=-1).numpy()

    def predict_members(self, X) -> np.ndarray:
        """(members, n, n_classes): each member's class probabilities (softmax of its logits).

        ``classes_[p.argmax(-1)]`` gives each member's labels; ``p.mean(axis=0)`` the mean of
        the members' probabilities (not ``predict_proba``, which averages logits)."""
        return torch.softmax(self._outputs(X), dim=-1).numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = False
        return tags


class DeepEnsembleRegressor(RegressorMixin, _DeepEnsemble):
    __doc__ = (
        """A deep ensemble regressor: ``members`` MLPs, WMLPs or SMLPs trained as one batched model.

    Features are standardised on the training part; the target is not (the paper's
    protocol), so a target far from unit scale trains slowly: wrap the regressor in
    ``TransformedTargetRegressor(regressor, transformer=StandardScaler())`` then. One
    target only. ``predict`` is the mean of the members' predictions.
"""
        + _PARAMETERS
        + """
    Attributes
    ----------"""
        + _ATTRIBUTES
        + _NOTES
        + """"""
    )

    _regression = True

    def _encode_targets(self, y: np.ndarray, *, first: bool) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if not first and not np.isfinite(y).all():
            raise ValueError("y_val: expected finite targets, got NaN or infinity")
        return y

    def predict(self, X) -> np.ndarray:
        """(n,) the mean of the members' predictions."""
        return self._outputs(X).mean(dim=0)[:, 0].numpy()

    def predict_members(self, X) -> np.ndarray:
        """(members, n): each member's predictions."""
        return self._outputs(X)[:, :, 0].numpy()
