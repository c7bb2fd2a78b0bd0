"""The valid values of choice params, shared by config validation and the code using them.

They live apart from the algorithms so that ``config`` (imported by every stage) does not
import the algorithms, and a change to one reruns only the stages that run it.
"""

REWEIGHT_MODES = ("equal_cells", "independence", "within_class")
BOUNDARY_METHODS = ("svm", "logistic")
COMPLEMENT_MODES = ("paper", "perp", "on_hyperplane")
COMPLEMENT_SHELLS = ("none", "rescale", "cap")
#: The GAN's training stream: auto = oversample for a binary target and a binary protected
#: attribute (where it was measured), none otherwise.
GAN_BALANCE = ("auto", "none", "oversample")
#: What the target classifier learns (see :mod:`facebalance.task`).
TASK_KINDS = ("binary", "multiclass", "multitask", "regression")
REGRESSION_LOSSES = ("l1", "smooth_l1")
#: synthfaces age distributions: uniform over 18-80, or skewed like UTKFace (most 20-35).
AGE_PROFILES = ("uniform", "utkface")
#: val/test of synthfaces: equal counts per cell (label x group), or drawn like train.
EVAL_SPLITS = ("balanced", "natural")
#: Headline metrics of each task kind (keys of the metrics JSON; ``compare.metrics``).
#: multitask adds ``accuracy_<column>``, ``macro_f1_<column>`` and
#: ``class_acc_std_<column>`` for each extra target.
TASK_METRICS = {
    "binary": ("ap", "accuracy", "deo", "ba", "kl", "kl_max", "kl_mean", "group_acc_std",
               "dp_diff", "eo_diff"),
    "multiclass": ("accuracy", "macro_f1", "class_acc_std", "group_acc_std", "group_acc_gap",
                   "worst_group_acc"),
    "multitask": ("accuracy", "macro_f1", "class_acc_std", "group_acc_std", "group_acc_gap",
                  "worst_group_acc"),
    "regression": ("mae", "rmse", "wmae", "worst_group_mae", "best_group_mae",
                   "group_mae_gap"),
}
#: Metrics compared when ``compare.metrics`` is empty.
DEFAULT_COMPARE = {
    "binary": ("ap", "accuracy", "deo", "ba", "kl", "group_acc_std"),
    "multiclass": ("accuracy", "macro_f1", "class_acc_std", "group_acc_std"),
    "multitask": ("accuracy", "macro_f1", "class_acc_std", "group_acc_std"),
    "regression": ("mae", "wmae", "worst_group_mae", "group_mae_gap"),
}
#: compare's validation guard: the (quality, fairness) metric pair judged per task kind.
GUARD_METRICS = {
    "binary": ("ap", "deo"),
    "multiclass": ("accuracy", "group_acc_std"),
    "multitask": ("accuracy", "group_acc_std"),
    "regression": ("mae", "worst_group_mae"),
}
#: Per-head metrics of a multitask model's extra targets.
HEAD_METRICS = ("accuracy", "macro_f1", "class_acc_std")
#: How the invert stage finds latents (:mod:`facebalance.latent.invert`).
INVERT_METHODS = ("encoder", "optimize", "both")
#: Named tasks (param changes in :mod:`facebalance.presets`) that ``make repro`` can run.
PRESETS = ("blond_male", "skin4", "skin4_guided", "race_gender", "hard", "age", "age_smote")
#: Face embedders of the verification task (:mod:`facebalance.models.embedder`).
EMBED_MODELS = ("facenet", "dlib")
#: Networks ``embed.weights: train`` trains on the prepared identities.
EMBED_BACKBONES = ("small_resnet", "inception_resnet_v1")
#: dlib's alignment: 5-point landmarks in the face crop, dlib's detector first, or none.
EMBED_ALIGN = ("landmarks", "detect", "none")
#: Pair features of the verification head (:func:`facebalance.metrics.verification.pair_features`).
VERIFY_FEATURES = ("chi2", "absdiff", "product", "cosine")
